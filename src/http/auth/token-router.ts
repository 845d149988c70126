import express, { type Request, type Response, type Router } from 'express';
import type pg from 'pg';
import { principalOf } from '../../app.js';
import { ErrorCode, RadScribeError } from '../../errors.js';
import { type ApiToken, listApiTokens, parseExpiry } from './api-tokens.js';
import { actorOf, isRole, ROLES } from './roles.js';
import { createTokenAudited, revokeTokenAudited } from './token-admin.js';

/**
 * API token administration over HTTP (admin role; mounted under /api), the same operations as
 * `radscribe token create|list|revoke`; each change is audited (token-admin.ts).
 */
function view(t: ApiToken): Record<string, unknown> {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    scopes: t.scopes,
    createdAt: t.createdAt.toISOString(),
    expiresAt: t.expiresAt?.toISOString() ?? null,
    revokedAt: t.revokedAt?.toISOString() ?? null,
    createdBy: t.createdBy,
    firstUsedAt: t.firstUsedAt?.toISOString() ?? null,
  };
}

function actor(res: Response): string {
  const p = principalOf(res);
  return p ? actorOf(p) : 'unknown';
}

function source(req: Request): { source?: string } {
  return req.socket.remoteAddress ? { source: req.socket.remoteAddress } : {};
}

/** A JSON body of at most 16 KiB; too large is 413, not JSON is 400 (not the parser's bare 500). */
const json = express.json({ limit: '16kb' });
function jsonBody(req: Request, res: Response, next: (err?: unknown) => void): void {
  json(req, res, (err?: unknown) => {
    if (!err) return next();
    const type = (err as { type?: unknown }).type;
    next(
      type === 'entity.too.large'
        ? new RadScribeError(ErrorCode.PayloadTooLarge, 'request body is larger than 16 KiB')
        : new RadScribeError(ErrorCode.RequestInvalid, 'request body must be a JSON object'),
    );
  });
}

export function createTokenRouter(deps: { readonly pool: pg.Pool }): Router {
  const r = express.Router();
  r.get('/tokens', async (_req, res, next) => {
    try {
      res.json({ tokens: (await listApiTokens(deps.pool)).map(view) });
    } catch (err: unknown) {
      next(err);
    }
  });
  r.post('/tokens', jsonBody, async (req, res, next) => {
    try {
      const body: unknown = req.body;
      const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
      if (typeof b.name !== 'string' || b.name.trim() === '')
        throw new RadScribeError(ErrorCode.RequestInvalid, 'name: required, a non-empty string');
      if (!isRole(b.role))
        throw new RadScribeError(ErrorCode.RequestInvalid, `role: must be one of ${ROLES.join(', ')}`);
      const scopes = b.scopes ?? [];
      if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && s.startsWith('/')))
        throw new RadScribeError(ErrorCode.RequestInvalid, 'scopes: must be a list of paths starting with /');
      if (b.expires !== undefined && typeof b.expires !== 'string')
        throw new RadScribeError(ErrorCode.RequestInvalid, 'expires: must be like 30d or an ISO 8601 date-time');
      const expiresAt = b.expires ? parseExpiry(b.expires) : undefined;
      const role = b.role;
      const name = b.name;
      const created = await createTokenAudited(
        deps.pool,
        { name, role, scopes: scopes as string[], ...(expiresAt ? { expiresAt } : {}) },
        { actor: actor(res), ...source(req), via: 'http' },
      );
      // The secret is in this answer only; it is stored as its SHA-256.
      res.status(201).json({ ...view(created.token), secret: created.secret });
    } catch (err: unknown) {
      next(err);
    }
  });
  r.delete('/tokens/:id', async (req, res, next) => {
    try {
      const t = await revokeTokenAudited(deps.pool, String(req.params.id), {
        actor: actor(res),
        ...source(req),
        via: 'http',
      });
      if (!t) throw new RadScribeError(ErrorCode.NotFound, 'no such token');
      res.json(view(t));
    } catch (err: unknown) {
      next(err);
    }
  });
  return r;
}
