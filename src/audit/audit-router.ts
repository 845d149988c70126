import express, { type Request, type Router } from 'express';
import type pg from 'pg';
import { ErrorCode, RadScribeError } from '../errors.js';
import { AuditEventKind } from './audit-codes.js';
import { type AuditFilter, listAudit } from './audit-log.js';

export const DEFAULT_AUDIT_PAGE = 100;
export const MAX_AUDIT_PAGE = 10_000;

const KINDS: ReadonlySet<string> = new Set(Object.values(AuditEventKind));

/** A bad query parameter: 400 with the parameter named (app.ts turns it into the response). */
function badParameter(name: string, why: string): RadScribeError {
  return new RadScribeError(ErrorCode.RequestInvalid, `query parameter ${name}: ${why}`);
}

function single(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badParameter(name, 'give it once, as a single value');
  return v;
}

function date(req: Request, name: string): Date | undefined {
  const v = single(req, name);
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (v.trim() === '' || Number.isNaN(d.getTime())) throw badParameter(name, 'must be an ISO 8601 date-time');
  return d;
}

/** The filter of GET /api/audit, validated; throws RequestInvalid naming the first bad parameter. */
export function auditFilterFromQuery(req: Request): AuditFilter {
  const since = date(req, 'since');
  const until = date(req, 'until');
  const kind = single(req, 'kind');
  if (kind !== undefined && !KINDS.has(kind)) throw badParameter('kind', `must be one of ${[...KINDS].join(', ')}`);
  const study = single(req, 'study');
  const limitText = single(req, 'limit');
  let limit = DEFAULT_AUDIT_PAGE;
  if (limitText !== undefined) {
    if (!/^\d+$/.test(limitText)) throw badParameter('limit', `must be an integer from 1 to ${MAX_AUDIT_PAGE}`);
    limit = Math.min(Number(limitText), MAX_AUDIT_PAGE);
    if (limit < 1) throw badParameter('limit', `must be an integer from 1 to ${MAX_AUDIT_PAGE}`);
  }
  return {
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    ...(kind ? { kind: kind as AuditEventKind } : {}),
    ...(study ? { studyInstanceUid: study } : {}),
    limit,
  };
}

/**
 * Compliance queries over HTTP: GET /audit. Each query is itself audited (DCM 110101 Audit Log
 * Used, in listAudit). Errors go to the app's one error handler.
 */
export function createAuditRouter(deps: { readonly pool: pg.Pool }): Router {
  const r = express.Router();
  r.get('/audit', async (req, res, next) => {
    try {
      const filter = auditFilterFromQuery(req);
      res.json(await listAudit(deps.pool, filter, `http:${req.socket.remoteAddress ?? 'unknown'}`));
    } catch (err: unknown) {
      next(err);
    }
  });
  return r;
}
