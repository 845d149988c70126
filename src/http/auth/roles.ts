/**
 * Roles of HTTP callers (issue 12, Access): a closed set. Each role can do exactly its part; the
 * route → roles table is src/http/auth/route-policy.ts.
 */
export const Role = {
  /** Configuration: API tokens, and the operational endpoints. */
  Admin: 'admin',
  /** Queues and jobs: replays, force-complete, metrics. */
  Operator: 'operator',
  /** Audit trail read and export only (PS3.15 A.5.3.3 Audit Log Used is recorded for each read). */
  Auditor: 'auditor',
  /** STOW-RS (PS3.18 10.5), narrowed per study path by the token's scopes. */
  Ingest: 'ingest',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

export const ROLES: readonly Role[] = Object.values(Role);

export function isRole(s: unknown): s is Role {
  return typeof s === 'string' && (ROLES as readonly string[]).includes(s);
}

/** How a caller proved who it is. */
export const PrincipalKind = {
  ApiToken: 'api-token',
  Oidc: 'oidc',
} as const;
export type PrincipalKind = (typeof PrincipalKind)[keyof typeof PrincipalKind];

/** An authenticated caller: the audit actor is `${kind}:${id}` (never the secret). */
export interface Principal {
  readonly kind: PrincipalKind;
  /** API token id, or the JWT `sub`. */
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  /** Narrowing of the role (e.g. STOW-RS study path prefixes); empty = the whole role. */
  readonly scopes: readonly string[];
}

export function actorOf(p: Principal): string {
  return `${p.kind}:${p.id}`;
}
