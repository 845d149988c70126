import type { Request, Response } from 'express';
import express from 'express';
import { isValidUid } from '../dicom/dataset.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError, RETRY_AFTER_SECONDS } from '../errors.js';
import type { InstanceOutcome, InstanceSink } from '../ingest/types.js';
import { FailureReason, ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import type { DicomJsonDataset } from './dicom-json.js';
import { sqAttr, Tag, uiAttr, urAttr, usAttr } from './dicom-json.js';
import type { MediaType } from './media-type.js';
import { MediaTypes, parseMediaType } from './media-type.js';
import { DEFAULT_MULTIPART_LIMITS, isMultipartError, MultipartFailure, parseMultipart } from './multipart.js';
import { discardTempFile, spoolToTempFile } from './temp-spool.js';

/**
 * Inbound STOW-RS (PS3.18 §10.5, "Store Instances"): POST {base}/studies[/{study}] with
 * multipart/related; type="application/dicom". Each part is streamed to a temp file and handed to the
 * InstanceSink; the answer is built only from what the sink made durable (dicom-sr-and-audit.md §7).
 */

export interface StowLimits {
  /** Largest accepted instance; a larger part fails alone with 0xA700 (PS3.4 "Refused: Out of Resources"). */
  readonly maxPartBytes: number;
  /** Largest accepted request; beyond it the request is refused. */
  readonly maxRequestBytes: number;
}

/**
 * The gateway's defaults (config `ingest.maxPartBytes`, `ingest.maxRequestBytes`): one 4 GiB
 * instance (a 2 GiB multi-frame instance and its header fit), 8 GiB per request, below the multipart parser's own 20 GiB ceiling.
 */
export const DEFAULT_STOW_LIMITS: StowLimits = {
  maxPartBytes: DEFAULT_MULTIPART_LIMITS.maxPartBytes,
  maxRequestBytes: 8 * 1024 ** 3,
};

export interface StowRouterDeps {
  readonly sink: InstanceSink;
  /** Where parts are spooled; same filesystem as the store so the sink can rename. */
  readonly tmpDir: string;
  readonly limits?: Partial<StowLimits>;
  readonly logger?: Logger;
  /** Public base of this DICOMweb service (e.g. https://gw.example/dicomweb) for Retrieve URL (0008,1190). */
  readonly retrieveUrlBase?: string;
  /** Authenticated HTTP user, set by whatever auth middleware runs before the router. Default: `res.locals.user`. */
  readonly actorOf?: (req: Request, res: Response) => string | undefined;
}

/** One STOW-RS part's result, in request order. */
export type PartResult =
  | {
      readonly ok: true;
      readonly sopClassUid: string;
      readonly sopInstanceUid: string;
      readonly studyInstanceUid: string;
      readonly seriesInstanceUid: string;
    }
  | {
      readonly ok: false;
      readonly failureReason: FailureReason;
      readonly sopClassUid?: string;
      readonly sopInstanceUid?: string;
    };

function defaultActor(_req: Request, res: Response): string | undefined {
  const u: unknown = res.locals.user;
  return typeof u === 'string' && u.length > 0 ? u : undefined;
}

/**
 * Check the request media type (PS3.18 §10.5.1.1). Only PS3.10 parts are implemented; the metadata +
 * bulk data form (application/dicom+json / +xml parts) is a 415 until we support it.
 */
function checkContentType(header: string | undefined): { boundary: string } {
  if (!header) throw new RadScribeError(ErrorCode.MediaTypeUnsupported, 'STOW-RS needs Content-Type multipart/related');
  let mt: MediaType;
  try {
    mt = parseMediaType(header);
  } catch (err: unknown) {
    throw new RadScribeError(ErrorCode.MediaTypeUnsupported, normalizeErrorString(err));
  }
  if (mt.essence !== MediaTypes.MultipartRelated) {
    throw new RadScribeError(ErrorCode.MediaTypeUnsupported, `STOW-RS does not accept ${mt.essence}`);
  }
  const type = mt.params.type?.toLowerCase();
  if (type !== undefined && type !== MediaTypes.Dicom) {
    throw new RadScribeError(
      ErrorCode.MediaTypeUnsupported,
      `STOW-RS part type ${type} is not supported; send ${MediaTypes.Dicom}`,
    );
  }
  const boundary = mt.params.boundary;
  if (!boundary) throw new RadScribeError(ErrorCode.RequestInvalid, 'multipart/related without a boundary parameter');
  return { boundary };
}

export function createStowRouter(deps: StowRouterDeps): express.Router {
  const log = deps.logger ?? childLogger('stow-rs');
  const limits: StowLimits = { ...DEFAULT_STOW_LIMITS, ...deps.limits };
  const actorOf = deps.actorOf ?? defaultActor;
  const router = express.Router();

  const baseOf = (req: Request): string =>
    (deps.retrieveUrlBase ?? `${req.protocol}://${req.get('host') ?? 'localhost'}${req.baseUrl}`).replace(/\/+$/, '');

  async function storeInstances(req: Request, res: Response): Promise<void> {
    const studyParam = typeof req.params.study === 'string' ? req.params.study : undefined;
    if (studyParam !== undefined && !isValidUid(studyParam)) {
      throw new RadScribeError(ErrorCode.RequestInvalid, 'study in the request URI is not a valid UID');
    }
    const { boundary } = checkContentType(req.headers['content-type']);
    const ctx = {
      via: ReceivedVia.StowRs,
      remoteAddress: req.socket.remoteAddress,
      actor: actorOf(req, res),
      expectedStudyInstanceUid: studyParam,
    };
    const results: PartResult[] = [];
    const started = Date.now();
    // Once the database failed for one part, the rest of this request fails without trying it:
    // each would wait out the same outage (issue 9), and the client retries the whole request.
    let databaseDown = false;
    for await (const part of parseMultipart(req, boundary, {
      maxPartBytes: limits.maxPartBytes,
      maxTotalBytes: limits.maxRequestBytes,
    })) {
      const partType = part.headers['content-type'];
      if (partType !== undefined && safeEssence(partType) !== MediaTypes.Dicom) {
        // A part that is not a PS3.10 instance cannot be understood (PS3.4 C000); the rest still count.
        part.body.resume();
        results.push({ ok: false, failureReason: FailureReason.CannotUnderstand });
        continue;
      }
      if (databaseDown) {
        part.body.resume();
        results.push({ ok: false, failureReason: FailureReason.OutOfResources });
        continue;
      }
      let file: Awaited<ReturnType<typeof spoolToTempFile>>;
      try {
        file = await spoolToTempFile(part.body, deps.tmpDir, 'stow');
      } catch (err: unknown) {
        if (isMultipartError(err, MultipartFailure.PartTooLarge)) {
          results.push({ ok: false, failureReason: FailureReason.OutOfResources });
          continue;
        }
        throw err; // truncated/aborted request: nothing of this part is kept
      }
      let outcome: InstanceOutcome;
      try {
        outcome = await deps.sink.accept(file, ctx);
      } catch (err: unknown) {
        // The sink contract says it never throws; if it does, the part failed, the request goes on.
        log.error('instance sink threw', { code: errorCodeOf(err), error: normalizeErrorString(err) });
        outcome = {
          status: 'failed',
          failureReason: FailureReason.ProcessingFailure,
          code: errorCodeOf(err),
          message: normalizeErrorString(err),
        };
      }
      if (outcome.status === 'failed' || outcome.storedPath !== file.path) await discardTempFile(file);
      if (outcome.status === 'failed' && outcome.code === ErrorCode.DatabaseUnavailable) databaseDown = true;
      if (outcome.status === 'failed') {
        log.info('STOW-RS instance failed', {
          part: part.index,
          code: outcome.code,
          failureReason: outcome.failureReason,
          sopInstanceUid: outcome.sopInstanceUid,
        });
        results.push({
          ok: false,
          failureReason: outcome.failureReason,
          sopClassUid: outcome.sopClassUid,
          sopInstanceUid: outcome.sopInstanceUid,
        });
      } else {
        const id = outcome.identity;
        results.push({
          ok: true,
          sopClassUid: id.sopClassUid,
          sopInstanceUid: id.sopInstanceUid,
          studyInstanceUid: id.studyInstanceUid,
          seriesInstanceUid: id.seriesInstanceUid,
        });
      }
    }
    if (req.socket.destroyed) return;
    if (results.length === 0) throw new RadScribeError(ErrorCode.RequestInvalid, 'multipart/related body has no parts');
    const stored = results.filter((r) => r.ok).length;
    const failed = results.length - stored;
    if (databaseDown) {
      // Nothing of this request is acknowledged that was not committed. None stored: 503 Service
      // Unavailable with Retry-After (PS3.18 §10.5.3 lists 503 Busy for Store), the whole request
      // to be sent again; some stored: 202 with 0xA700 for the rest, and the same hint.
      if (stored === 0) {
        log.warn('STOW-RS refused: database unavailable', { parts: results.length, durationMs: Date.now() - started });
        throw new RadScribeError(ErrorCode.DatabaseUnavailable, 'database unavailable during STOW-RS');
      }
      res.set('Retry-After', String(RETRY_AFTER_SECONDS));
    }
    // PS3.18 §10.5.3 (Table 10.5.3-1 in recent editions): 200 all stored, 202 some failed, 409 none stored.
    const status = failed === 0 ? 200 : stored > 0 ? 202 : 409;
    log.info('STOW-RS request done', {
      status,
      stored,
      failed,
      studyInstanceUid: studyParam,
      durationMs: Date.now() - started,
    });
    res
      .status(status)
      .type(MediaTypes.DicomJson)
      .send(JSON.stringify(stowResponse(results, baseOf(req), studyParam)));
  }

  router.post('/studies', storeInstances);
  router.post('/studies/:study', storeInstances);

  // Errors go to the app's one error handler (app.ts `errorHandler`, STYLE rule 3).
  return router;
}

function safeEssence(header: string): string | undefined {
  try {
    return parseMediaType(header).essence;
  } catch {
    return undefined;
  }
}

/** Store Instances Response Module (PS3.18 §10.5.3, Table 10.5.3-2) as DICOM JSON. */
export function stowResponse(
  results: readonly PartResult[],
  base: string,
  studyFromUrl: string | undefined,
): DicomJsonDataset {
  const okStudies = new Set(results.flatMap((r) => (r.ok ? [r.studyInstanceUid] : [])));
  const study = studyFromUrl ?? (okStudies.size === 1 ? [...okStudies][0] : undefined);
  const referenced: DicomJsonDataset[] = [];
  const failed: DicomJsonDataset[] = [];
  for (const r of results) {
    if (r.ok) {
      referenced.push({
        [Tag.ReferencedSOPClassUID]: uiAttr(r.sopClassUid),
        [Tag.ReferencedSOPInstanceUID]: uiAttr(r.sopInstanceUid),
        [Tag.RetrieveURL]: urAttr(
          `${base}/studies/${r.studyInstanceUid}/series/${r.seriesInstanceUid}/instances/${r.sopInstanceUid}`,
        ),
      });
    } else {
      const item: DicomJsonDataset = {};
      if (r.sopClassUid) item[Tag.ReferencedSOPClassUID] = uiAttr(r.sopClassUid);
      if (r.sopInstanceUid) item[Tag.ReferencedSOPInstanceUID] = uiAttr(r.sopInstanceUid);
      item[Tag.FailureReason] = usAttr(r.failureReason);
      failed.push(item);
    }
  }
  const body: DicomJsonDataset = {};
  if (study) body[Tag.RetrieveURL] = urAttr(`${base}/studies/${study}`);
  // Orthanc-dicomweb 1.19 omits an empty Failed SOP Sequence for client compatibility (gateways.md #17).
  if (failed.length > 0) body[Tag.FailedSOPSequence] = sqAttr(failed);
  body[Tag.ReferencedSOPSequence] = sqAttr(referenced);
  return body;
}
