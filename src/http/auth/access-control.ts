import type pg from 'pg';
import { AuditEventKind, EventOutcome } from '../../audit/audit-codes.js';
import { recordAudit } from '../../audit/audit-log.js';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../../errors.js';
import { childLogger, type Logger } from '../../logger.js';
import type { AuthFailureThrottle } from '../limits.js';
import { AuthenticationError, resolveApiToken, TOKEN_PREFIX, TokenRefusal } from './api-tokens.js';
import { actorOf, type Principal } from './roles.js';
import { policyFor, type RoutePolicy } from './route-policy.js';

/**
 * Access control of the HTTP endpoints (issue 12, Access), free of the HTTP framework (app.ts wraps
 * it as middleware). Resolves `Authorization: Bearer <token>` (RFC 6750 §2.1) to a principal and
 * checks the route table (route-policy.ts). Every refusal is audited before the answer goes out:
 * - no, unknown, malformed, expired or revoked credentials → 401, `user-authentication` outcome 4
 *   (DCM 110114 User Authentication, PS3.15 A.5.3.13);
 * - a role the route does not allow, or a path outside the token's scopes → 403, `access-refused`
 *   outcome 8 (DCM 110113 Security Alert, 110132 Use of Restricted Function, PS3.15 A.5.3.11).
 * The first successful use of a token is audited too (`user-authentication` outcome 0). The token
 * secret is never recorded: the actor is `api-token:<id>`, the source the caller's network address.
 */
export interface AccessRequest {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly authorization: string | undefined;
  readonly remoteAddress: string | undefined;
}

/** A JWT verifier (OIDC); returns the principal or throws AuthenticationError. */
export type BearerVerifier = (token: string) => Promise<Principal>;

export interface AccessControlOptions {
  readonly pool: pg.Pool;
  readonly metricsPublic?: boolean;
  /** OIDC bearer JWTs (tokens that are not `rsk_` API tokens); unset = API tokens only. */
  readonly jwt?: BearerVerifier;
  /** Failed authentications per address (limits.ts); unset = no throttle. */
  readonly authFailures?: AuthFailureThrottle;
  readonly logger?: Logger;
}

export class AccessRefusedError extends RadScribeError {
  override name = 'AccessRefusedError';
  constructor(message: string) {
    super(ErrorCode.Forbidden, message);
  }
}

export class AccessControl {
  readonly #log: Logger;
  #audits: Promise<void> = Promise.resolve();

  constructor(private readonly options: AccessControlOptions) {
    this.#log = options.logger ?? childLogger('access');
  }

  /**
   * The principal of an allowed request (undefined for a public route), or throws
   * AuthenticationError (401) / AccessRefusedError (403) once the refusal is audited.
   */
  async authorize(req: AccessRequest): Promise<Principal | undefined> {
    const policy = policyFor(req.method, req.path, { metricsPublic: this.options.metricsPublic ?? false });
    if (policy && policy.roles.length === 0) return undefined;
    const route = policy?.path ?? 'unmatched';
    // An address that keeps failing is refused (429) before its credentials are looked up.
    if (req.remoteAddress) this.options.authFailures?.check(req.remoteAddress);
    let principal: Principal;
    try {
      const r = await this.#authenticate(req.authorization);
      principal = r.principal;
      if (r.firstUse)
        await this.#audit({
          kind: AuditEventKind.UserAuthentication,
          outcome: EventOutcome.Success,
          actor: actorOf(principal),
          ...(req.remoteAddress ? { source: req.remoteAddress } : {}),
          detail: { firstUse: true, role: principal.role, principal: principal.kind, method: req.method, route },
        });
    } catch (err: unknown) {
      if (!(err instanceof AuthenticationError)) throw err;
      const t =
        req.remoteAddress && this.options.authFailures
          ? this.options.authFailures.fail(req.remoteAddress)
          : { blocked: false, refusedSince: 0 };
      await this.#audit({
        kind: AuditEventKind.UserAuthentication,
        // The failure that starts a block is a Security Alert's worth: serious, not minor.
        outcome: t.blocked ? EventOutcome.SeriousFailure : EventOutcome.MinorFailure,
        actor: err.tokenId ? `api-token:${err.tokenId}` : 'anonymous',
        ...(req.remoteAddress ? { source: req.remoteAddress } : {}),
        detail: {
          reason: err.reason,
          method: req.method,
          route,
          ...(t.blocked ? { addressBlocked: true } : {}),
          ...(t.refusedSince > 0 ? { refusedWhileBlocked: t.refusedSince } : {}),
        },
      });
      throw err;
    }
    // Deny by default: a path the table does not name is 404 here, before any router sees it, so a
    // spelling the framework routes more loosely than the table matches (case, encoding, slashes)
    // cannot reach a handler unchecked.
    if (!policy) throw new RadScribeError(ErrorCode.NotFound, 'no such resource');
    const why = this.#refusal(policy, principal, req.path);
    if (why) {
      await this.#audit({
        kind: AuditEventKind.AccessRefused,
        outcome: EventOutcome.SeriousFailure,
        actor: actorOf(principal),
        ...(req.remoteAddress ? { source: req.remoteAddress } : {}),
        detail: { reason: why, role: principal.role, method: req.method, route, allowed: [...policy.roles] },
      });
      throw new AccessRefusedError(
        why === 'role'
          ? `role ${principal.role} may not ${policy.purpose}`
          : principal.scopes.length === 0
            ? `role ${principal.role} may ${policy.purpose} only with a token scoped to paths`
            : 'path is outside the token scopes',
      );
    }
    return principal;
  }

  #refusal(policy: RoutePolicy, p: Principal, path: string): 'role' | 'scope' | undefined {
    if (!policy.roles.includes(p.role)) return 'role';
    // Scopes narrow a role to path prefixes (e.g. an ingest token for /dicomweb/studies/1.2.3 only).
    if (p.scopes.length > 0 && !p.scopes.some((s) => path === s || path.startsWith(s.endsWith('/') ? s : `${s}/`)))
      return 'scope';
    // A role the route allows only narrowed (route-policy.ts `scopedOnly`): an unscoped token is refused.
    if (p.scopes.length === 0 && policy.scopedOnly?.includes(p.role)) return 'scope';
    return undefined;
  }

  async #authenticate(header: string | undefined): Promise<{ principal: Principal; firstUse: boolean }> {
    if (header === undefined || header.trim() === '') throw new AuthenticationError(TokenRefusal.Missing);
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
    if (!m) throw new AuthenticationError(TokenRefusal.Malformed);
    const token = m[1] as string;
    if (token.startsWith(TOKEN_PREFIX) || !this.options.jwt) return resolveApiToken(this.options.pool, token);
    return { principal: await this.options.jwt(token), firstUse: false };
  }

  /** Audit writes one at a time (refusals come in bursts; PGlite has one session). */
  async #audit(ev: Parameters<typeof recordAudit>[1]): Promise<void> {
    const write = this.#audits.then(async () => {
      try {
        await recordAudit(this.options.pool, ev);
      } catch (err: unknown) {
        // The refusal still goes out: an unavailable audit store must not open the door or hang.
        this.#log.warn('could not audit access decision', { kind: ev.kind, error: normalizeErrorString(err) });
      }
    });
    this.#audits = write;
    await write;
  }
}

/**
 * Who asks, for Audit Log Used (audit-router.ts): the authenticated principal set on `res.locals`
 * by the access middleware, else the network address.
 */
export function auditRequester(req: {
  readonly socket: { readonly remoteAddress?: string | undefined };
  readonly res?: { readonly locals: Record<string, unknown> } | undefined;
}): { actor: string; address?: string } {
  const address = req.socket.remoteAddress;
  const p = req.res?.locals.principal as Principal | undefined;
  const actor = p ? actorOf(p) : `http:${address ?? 'unknown'}`;
  return { actor, ...(address ? { address } : {}) };
}
