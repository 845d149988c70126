import type pg from 'pg';
import { AuditEventKind } from '../../audit/audit-codes.js';
import { recordAudit } from '../../audit/audit-log.js';
import { withTransaction } from '../../db/pool.js';
import { type ApiToken, type CreateTokenInput, createApiToken, revokeApiToken } from './api-tokens.js';

/**
 * Creating and revoking API tokens with their audit event in the same transaction (STYLE §2.6):
 * `security-configuration`, DCM 110113 Security Alert / 110129 Security Configuration
 * (PS3.15 A.5.3.11). The detail names the token id and role, never the secret.
 */
export interface TokenAdminContext {
  readonly actor: string;
  readonly source?: string;
  readonly via: 'cli' | 'http' | 'demo' | 'test';
}

export function createTokenAudited(
  pool: pg.Pool,
  input: Omit<CreateTokenInput, 'createdBy'>,
  ctx: TokenAdminContext,
): Promise<{ token: ApiToken; secret: string }> {
  return withTransaction(pool, async (c) => {
    const t = await createApiToken(c, { ...input, createdBy: ctx.actor });
    await recordAudit(c, {
      kind: AuditEventKind.SecurityConfiguration,
      actor: ctx.actor,
      ...(ctx.source ? { source: ctx.source } : {}),
      detail: {
        action: 'token-created',
        tokenId: t.token.id,
        role: t.token.role,
        scopes: [...t.token.scopes],
        expiresAt: t.token.expiresAt?.toISOString() ?? null,
        via: ctx.via,
      },
    });
    return t;
  });
}

export function revokeTokenAudited(pool: pg.Pool, id: string, ctx: TokenAdminContext): Promise<ApiToken | undefined> {
  return withTransaction(pool, async (c) => {
    const t = await revokeApiToken(c, id);
    if (t)
      await recordAudit(c, {
        kind: AuditEventKind.SecurityConfiguration,
        actor: ctx.actor,
        ...(ctx.source ? { source: ctx.source } : {}),
        detail: { action: 'token-revoked', tokenId: t.id, role: t.role, via: ctx.via },
      });
    return t;
  });
}
