import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import express from 'express';
import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Queryable } from '../db/pool.js';
import { isValidUid } from '../dicom/dataset.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError, toHttpStatus } from '../errors.js';
import { listRetrievableInstances, type RetrievableInstance } from '../ingest/instance-repository.js';
import { ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import { resolveLocalAe } from './local-ae.js';
import { formatMediaType, MediaTypes, multipartRelatedContentType, newBoundary } from './media-type.js';
import { multipartBody, multipartBodyLength, type OutboundPart } from './multipart.js';
import { acceptsSyntax, retrieveAcceptance } from './retrieve-accept.js';

/**
 * WADO-RS retrieve of what RadScribe holds (PS3.18 §10.4, "Retrieve Instances"): GET
 * {base}/studies/{study}[/series/{series}[/instances/{instance}]], and the same under a local AE,
 * {base}/aets/{AET}/studies/…, which serves only what was sent to that AE (C-STORE Called AE or
 * STOW-RS per-AE path): a token scoped to one AE's path sees that AE's instances and no others.
 * The answer is multipart/related; type="application/dicom", one part per instance with the stored
 * PS3.10 bytes, unchanged (the Retrieve URLs of our STOW-RS answers point here). Accept negotiation:
 * retrieve-accept.ts. Retention removed everything asked for: 410 Gone; never held, quarantined
 * (set aside for good, never served), or not under that AE: 404. Every retrieve that was
 * answered with instances is audited (`instances-retrieved`, 110104 R), a refused one too (outcome 4).
 */
export interface WadoRouterDeps {
  readonly pool: Queryable;
  /** Local AE titles served at /aets/{AET}/… (the DIMSE listeners' titles). */
  readonly localAeTitles?: readonly string[];
  readonly logger?: Logger;
  /** Authenticated HTTP user, set by the auth middleware. Default: `res.locals.user`. */
  readonly actorOf?: (req: Request, res: Response) => string | undefined;
}

/** What a retrieve asks for, from its path. */
interface RetrieveTarget {
  readonly level: 'study' | 'series' | 'instance';
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid?: string;
  readonly sopInstanceUid?: string;
  readonly calledAeTitle?: string;
}

function defaultActor(_req: Request, res: Response): string | undefined {
  const u: unknown = res.locals.user;
  return typeof u === 'string' && u.length > 0 ? u : undefined;
}

function uidParam(req: Request, name: string): string | undefined {
  const v = req.params[name];
  if (typeof v !== 'string') return undefined;
  if (!isValidUid(v))
    throw new RadScribeError(ErrorCode.RequestInvalid, `${name} in the request URI is not a valid UID`);
  return v;
}

/**
 * The instances a retrieve serves: live ones (under the AE, when one is named). Throws 404 when
 * nothing of it was ever held (or only quarantined instances), 410 when retention removed all of it.
 */
export function servable(
  rows: readonly RetrievableInstance[],
  calledAeTitle: string | undefined,
): RetrievableInstance[] {
  const seen = calledAeTitle === undefined ? rows : rows.filter((r) => r.calledAeTitle === calledAeTitle);
  const live = seen.filter((r) => !r.deleted && !r.quarantined);
  if (live.length > 0) return live;
  if (seen.some((r) => r.deleted && !r.quarantined))
    throw new RadScribeError(ErrorCode.Gone, 'the instances asked for were removed by retention');
  throw new RadScribeError(ErrorCode.NotFound, 'no such instances');
}

export function createWadoRouter(deps: WadoRouterDeps): express.Router {
  const log = deps.logger ?? childLogger('wado-rs');
  const actorOf = deps.actorOf ?? defaultActor;
  const router = express.Router();

  async function audit(
    req: Request,
    res: Response,
    t: Partial<RetrieveTarget>,
    outcome: EventOutcome,
    detail: Record<string, unknown>,
    sopInstanceUids?: readonly string[],
  ): Promise<void> {
    const actor = actorOf(req, res);
    try {
      await recordAudit(deps.pool, {
        kind: AuditEventKind.InstancesRetrieved,
        outcome,
        ...(actor ? { actor } : {}),
        // The requester receives the instances: PS3.15 A.5.3.5 role Destination.
        ...(req.socket.remoteAddress ? { destination: req.socket.remoteAddress } : {}),
        ...(t.studyInstanceUid ? { studyInstanceUid: t.studyInstanceUid } : {}),
        ...(sopInstanceUids ? { sopInstanceUids } : {}),
        detail: {
          via: ReceivedVia.WadoRs,
          ...(t.level ? { level: t.level } : {}),
          ...(t.seriesInstanceUid ? { seriesInstanceUid: t.seriesInstanceUid } : {}),
          ...(t.calledAeTitle ? { calledAeTitle: t.calledAeTitle } : {}),
          ...detail,
        },
      });
    } catch (err: unknown) {
      log.warn('could not audit retrieve', { error: normalizeErrorString(err) });
    }
  }

  const retrieveInstances =
    (level: RetrieveTarget['level']) =>
    async (req: Request, res: Response): Promise<void> => {
      let target: Partial<RetrieveTarget> = { level };
      try {
        const aet = typeof req.params.aet === 'string' ? req.params.aet : undefined;
        const calledAeTitle = aet === undefined ? undefined : resolveLocalAe(aet, deps.localAeTitles ?? []);
        const studyInstanceUid = uidParam(req, 'study') as string;
        const seriesInstanceUid = uidParam(req, 'series');
        const sopInstanceUid = uidParam(req, 'instance');
        target = {
          level,
          studyInstanceUid,
          ...(seriesInstanceUid ? { seriesInstanceUid } : {}),
          ...(sopInstanceUid ? { sopInstanceUid } : {}),
          ...(calledAeTitle ? { calledAeTitle } : {}),
        };
        await serve(req, res, target as RetrieveTarget);
      } catch (err: unknown) {
        if (res.headersSent) throw err;
        const code = errorCodeOf(err);
        if (toHttpStatus(code) < 500)
          await audit(req, res, target, EventOutcome.MinorFailure, { errorCode: code, httpStatus: toHttpStatus(code) });
        throw err;
      }
    };

  async function serve(req: Request, res: Response, t: RetrieveTarget): Promise<void> {
    const started = Date.now();
    const acceptance = retrieveAcceptance(req.headers.accept);
    const rows = await listRetrievableInstances(deps.pool, t);
    const instances = servable(rows, t.calledAeTitle);
    // All or nothing: a retrieve that dropped instances in another syntax would look complete.
    const refused = instances.filter((i) => !acceptsSyntax(acceptance, i.transferSyntaxUid));
    if (refused.length > 0) {
      const held = [...new Set(refused.map((i) => i.transferSyntaxUid))].join(', ');
      throw new RadScribeError(
        ErrorCode.NotAcceptable,
        `${refused.length} of ${instances.length} instances are held only in ${held}; ask with transfer-syntax=* or that UID (no transcoding)`,
      );
    }
    const parts: OutboundPart[] = instances.map((i) => ({
      contentType: formatMediaType(MediaTypes.Dicom, { 'transfer-syntax': i.transferSyntaxUid }),
      body: i.filePath,
    }));
    for (const i of instances) {
      const st = await stat(i.filePath).catch((err: unknown) => {
        throw new RadScribeError(
          ErrorCode.Internal,
          `stored file of a live instance is unreadable: ${normalizeErrorString(err)}`,
        );
      });
      if (st.size !== i.sizeBytes)
        throw new RadScribeError(ErrorCode.Internal, 'stored file size differs from its row');
    }
    const boundary = newBoundary();
    const length = await multipartBodyLength(parts, boundary);
    res.status(200);
    res.set('Content-Type', multipartRelatedContentType(boundary));
    res.set('Content-Length', String(length));
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const uids = instances.map((i) => i.sopInstanceUid);
    let complete = true;
    try {
      await pipeline(multipartBody(parts, boundary), res);
    } catch (err: unknown) {
      complete = false;
      log.info('WADO-RS retrieve not completed', {
        error: normalizeErrorString(err),
        studyInstanceUid: t.studyInstanceUid,
      });
    }
    await audit(
      req,
      res,
      t,
      complete ? EventOutcome.Success : EventOutcome.MinorFailure,
      {
        instances: instances.length,
        sizeBytes: instances.reduce((n, i) => n + i.sizeBytes, 0),
        transferSyntaxUids: [...new Set(instances.map((i) => i.transferSyntaxUid))],
        ...(complete ? {} : { aborted: true }),
      },
      uids,
    );
    log.info('WADO-RS retrieve done', {
      level: t.level,
      studyInstanceUid: t.studyInstanceUid,
      instances: instances.length,
      complete,
      durationMs: Date.now() - started,
    });
  }

  for (const base of ['', '/aets/:aet']) {
    router.get(`${base}/studies/:study`, retrieveInstances('study'));
    router.get(`${base}/studies/:study/series/:series`, retrieveInstances('series'));
    router.get(`${base}/studies/:study/series/:series/instances/:instance`, retrieveInstances('instance'));
  }
  // Errors go to the app's one error handler (app.ts `errorHandler`, STYLE rule 3).
  return router;
}
