import express, { type Request, type Router } from 'express';
import type pg from 'pg';
import { AuditEventKind } from './audit-codes.js';
import { type AuditFilter, listAudit } from './audit-log.js';
import {
  AuditOutputFormat,
  AuditQueryError,
  type AuditRequester,
  auditEventsCsv,
  parseAuditQuery,
  queryAuditEvents,
  recordRefusedAuditQuery,
} from './audit-query.js';

export const DEFAULT_AUDIT_PAGE = 100;
export const MAX_AUDIT_PAGE = 10_000;

const KINDS: ReadonlySet<string> = new Set(Object.values(AuditEventKind));

/** A bad query parameter: 400 with the parameter named (app.ts turns it into the response). */
function badParameter(name: string, why: string): AuditQueryError {
  return new AuditQueryError(name, why);
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

export interface AuditRouterDeps {
  readonly pool: pg.Pool;
  /**
   * Who is asking, for the Audit Log Used event. Default: the network address. An authentication
   * middleware mounted before this router supplies the authenticated user instead.
   */
  readonly requester?: (req: Request) => AuditRequester;
}

function defaultRequester(req: Request): AuditRequester {
  const address = req.socket.remoteAddress;
  return { actor: `http:${address ?? 'unknown'}`, ...(address ? { address } : {}) };
}

/**
 * Compliance queries over HTTP (mounted under /api):
 * - GET /audit/events — filters, keyset pagination (`cursor`, and a `Link: rel="next"` header),
 *   JSON or CSV (`format=csv` or `Accept: text/csv`); see audit-query.ts.
 * - GET /audit — the older listing (since/until/kind/study), kept for existing callers.
 * Each query is itself audited (DCM 110101 Audit Log Used), a refused one too. Errors go to the
 * app's one error handler; a bad filter is 400 naming the parameter.
 */
export function createAuditRouter(deps: AuditRouterDeps): Router {
  const r = express.Router();
  const requester = deps.requester ?? defaultRequester;
  r.get('/audit/events', async (req, res, next) => {
    const who = requester(req);
    try {
      const params: Record<string, unknown> = { ...(req.query as Record<string, unknown>) };
      // Content negotiation: Accept: text/csv is the same as format=csv.
      if (params.format === undefined && req.accepts(['application/json', 'text/csv']) === 'text/csv')
        params.format = AuditOutputFormat.Csv;
      let query: ReturnType<typeof parseAuditQuery>;
      try {
        query = parseAuditQuery(params);
      } catch (err: unknown) {
        if (err instanceof AuditQueryError) await recordRefusedAuditQuery(deps.pool, who, err).catch(() => undefined);
        throw err;
      }
      const page = await queryAuditEvents(deps.pool, query, who);
      if (page.nextCursor) {
        const nextParams = new URLSearchParams(req.query as Record<string, string>);
        nextParams.set('cursor', page.nextCursor);
        res.set('Link', `<${req.baseUrl}${req.path}?${nextParams.toString()}>; rel="next"`);
      }
      if (query.format === AuditOutputFormat.Csv) {
        res.type('text/csv; charset=utf-8').send(auditEventsCsv(page.events));
      } else res.json(page);
    } catch (err: unknown) {
      next(err);
    }
  });
  r.get('/audit', async (req, res, next) => {
    const who = requester(req);
    try {
      let filter: AuditFilter;
      try {
        filter = auditFilterFromQuery(req);
      } catch (err: unknown) {
        // A refused read of the trail is still Audit Log Used (outcome 8), as on /audit/events.
        if (err instanceof AuditQueryError) await recordRefusedAuditQuery(deps.pool, who, err).catch(() => undefined);
        throw err;
      }
      res.json(await listAudit(deps.pool, filter, who.actor));
    } catch (err: unknown) {
      next(err);
    }
  });
  return r;
}
