import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Queryable } from '../../db/pool.js';
import { ErrorCode, RadScribeError } from '../../errors.js';
import { isRole, type Principal, PrincipalKind, type Role } from './roles.js';

/**
 * API tokens (issue 12, Access), the one writer of `api_tokens` (migrations/0011). A token is
 * `rsk_<43 base64url chars>`: 256 random bits. Only its SHA-256 is stored; a presented token is
 * found by its hash (a high-entropy secret needs no slow hash: nothing to guess offline). The secret
 * is returned once, by create(), and never logged or audited.
 */
export const TOKEN_PREFIX = 'rsk_';
const TOKEN_RE = /^rsk_[A-Za-z0-9_-]{43}$/;

export interface ApiToken {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly scopes: readonly string[];
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly createdBy: string;
  readonly firstUsedAt: Date | null;
}

export interface CreateTokenInput {
  readonly name: string;
  readonly role: Role;
  readonly scopes?: readonly string[];
  readonly expiresAt?: Date;
  /** Audit actor of whoever created it (CLI operator, admin token). */
  readonly createdBy: string;
}

/** Why a presented token was refused (detail of the user-authentication event, outcome 4). */
export const TokenRefusal = {
  Missing: 'missing',
  Malformed: 'malformed',
  Unknown: 'unknown',
  Expired: 'expired',
  Revoked: 'revoked',
} as const;
export type TokenRefusal = (typeof TokenRefusal)[keyof typeof TokenRefusal];

export class AuthenticationError extends RadScribeError {
  override name = 'AuthenticationError';
  constructor(
    readonly reason: TokenRefusal | string,
    /** The token id when the token is known (expired, revoked). */
    readonly tokenId?: string,
  ) {
    super(ErrorCode.Unauthenticated, 'a valid bearer token is required');
  }
}

interface TokenRow {
  id: string | number;
  name: string;
  role: string;
  scopes: string[];
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  created_by: string;
  first_used_at: Date | null;
  token_hash: string;
}

function toToken(r: TokenRow): ApiToken {
  if (!isRole(r.role)) throw new RadScribeError(ErrorCode.Internal, `api_tokens row ${r.id} has an unknown role`);
  return {
    id: String(r.id),
    name: r.name,
    role: r.role,
    scopes: r.scopes ?? [],
    createdAt: new Date(r.created_at),
    expiresAt: r.expires_at ? new Date(r.expires_at) : null,
    revokedAt: r.revoked_at ? new Date(r.revoked_at) : null,
    createdBy: r.created_by,
    firstUsedAt: r.first_used_at ? new Date(r.first_used_at) : null,
  };
}

export function hashToken(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

const COLUMNS = 'id, name, role, scopes, created_at, expires_at, revoked_at, created_by, first_used_at, token_hash';

export async function createApiToken(
  db: Queryable,
  input: CreateTokenInput,
): Promise<{ token: ApiToken; secret: string }> {
  if (!input.name.trim()) throw new RadScribeError(ErrorCode.RequestInvalid, 'token name must not be empty');
  if (!isRole(input.role)) throw new RadScribeError(ErrorCode.RequestInvalid, 'unknown role');
  if (input.expiresAt && input.expiresAt.getTime() <= Date.now())
    throw new RadScribeError(ErrorCode.RequestInvalid, 'token expiry must be in the future');
  const secret = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const { rows } = await db.query<TokenRow>(
    `INSERT INTO api_tokens (name, role, token_hash, scopes, expires_at, created_by)
     VALUES ($1, $2, $3, $4::text[], $5, $6) RETURNING ${COLUMNS}`,
    [input.name, input.role, hashToken(secret), [...(input.scopes ?? [])], input.expiresAt ?? null, input.createdBy],
  );
  return { token: toToken(rows[0] as TokenRow), secret };
}

export async function listApiTokens(db: Queryable): Promise<ApiToken[]> {
  const { rows } = await db.query<TokenRow>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY id`);
  return rows.map(toToken);
}

/** Revokes a token; returns it, or undefined when there is no such token. Revoking twice keeps the first time. */
export async function revokeApiToken(db: Queryable, id: string): Promise<ApiToken | undefined> {
  if (!/^\d{1,18}$/.test(id)) return undefined;
  const { rows } = await db.query<TokenRow>(
    `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING ${COLUMNS}`,
    [id],
  );
  return rows[0] ? toToken(rows[0]) : undefined;
}

/**
 * The principal of a presented token, or an AuthenticationError naming why not. `firstUse` is true
 * the first time the token is used (the caller audits it).
 */
export async function resolveApiToken(
  db: Queryable,
  secret: string,
  now: Date = new Date(),
): Promise<{ principal: Principal; firstUse: boolean }> {
  if (!TOKEN_RE.test(secret)) throw new AuthenticationError(TokenRefusal.Malformed);
  const hash = hashToken(secret);
  const { rows } = await db.query<TokenRow>(`SELECT ${COLUMNS} FROM api_tokens WHERE token_hash = $1`, [hash]);
  const row = rows[0];
  // The lookup is by hash; compare again in constant time so the match does not rest on the index alone.
  if (!row || !timingSafeEqual(Buffer.from(row.token_hash, 'hex'), Buffer.from(hash, 'hex')))
    throw new AuthenticationError(TokenRefusal.Unknown);
  const token = toToken(row);
  if (token.revokedAt) throw new AuthenticationError(TokenRefusal.Revoked, token.id);
  if (token.expiresAt && token.expiresAt.getTime() <= now.getTime())
    throw new AuthenticationError(TokenRefusal.Expired, token.id);
  let firstUse = false;
  if (!token.firstUsedAt) {
    const r = await db.query('UPDATE api_tokens SET first_used_at = now() WHERE id = $1 AND first_used_at IS NULL', [
      token.id,
    ]);
    firstUse = (r.rowCount ?? 0) > 0;
  }
  return {
    principal: { kind: PrincipalKind.ApiToken, id: token.id, name: token.name, role: token.role, scopes: token.scopes },
    firstUse,
  };
}

/** `30d`, `12h`, `90m` or an ISO 8601 date-time → the expiry instant. */
export function parseExpiry(text: string, now: Date = new Date()): Date {
  const m = /^(\d{1,6})([dhm])$/.exec(text);
  if (m) {
    const n = Number(m[1]);
    const unit = m[2] === 'd' ? 86_400_000 : m[2] === 'h' ? 3_600_000 : 60_000;
    if (n > 0) return new Date(now.getTime() + n * unit);
  }
  const d = new Date(text);
  if (!Number.isNaN(d.getTime()) && /^\d{4}-\d{2}-\d{2}/.test(text)) return d;
  throw new RadScribeError(ErrorCode.RequestInvalid, 'expiry must be like 30d, 12h, 90m or an ISO 8601 date-time');
}
