import type { Request, Response } from 'express';
import express from 'express';
import { isValidUid } from '../dicom/dataset.js';
import {
  ErrorCode,
  errorCodeOf,
  normalizeErrorString,
  RadScribeError,
  RETRY_AFTER_SECONDS,
  toHttpStatus,
} from '../errors.js';
import type { InstanceOutcome, InstanceRefusal, InstanceSink, RefusalRecorder } from '../ingest/types.js';
import { FailureReason, ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import type { DicomJsonDataset } from './dicom-json.js';
import { sqAttr, Tag, uiAttr, urAttr, usAttr } from './dicom-json.js';
import { aePath, resolveLocalAe } from './local-ae.js';
import type { MediaType } from './media-type.js';
import { MediaTypes, parseMediaType } from './media-type.js';
import {
  boundaryProblem,
  DEFAULT_MULTIPART_LIMITS,
  isMultipartError,
  MAX_INBOUND_BOUNDARY_LENGTH,
  type MultipartError,
  MultipartFailure,
  parseMultipart,
} from './multipart.js';
import { discardHashing, discardTempFile, spoolToTempFile } from './temp-spool.js';

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
  /**
   * Where the router's own refusals go (`instance-refused` audit events): parts it cannot frame or
   * read, requests refused whole. Refusals by the sink are audited by the sink.
   */
  readonly refusals?: RefusalRecorder;
  /**
   * Local AE titles served at /aets/{AET}/studies (the DIMSE listeners' titles, issue 11): a STOW-RS
   * there records {AET} as the instance's called AE, like a C-STORE to that AE. Empty: every {AET}
   * is unknown (404).
   */
  readonly localAeTitles?: readonly string[];
}

/**
 * HTTP status of a STOW-RS answer (PS3.18 §10.5.3, Table 10.5.3-1): 200 all stored; 202 some stored
 * and some failed; 409 none stored because of the instances (each has its Failure Reason); 400 none
 * stored because the request itself could not be read (multipart framing); 413 none stored because
 * the request is over the size limit. Parts stored before a framing failure are durable, so the
 * sender is told about them with 202 rather than a 4xx that would hide them.
 */
export function stowStatus(results: readonly PartResult[], framing?: MultipartFailure): 200 | 202 | 400 | 409 | 413 {
  const stored = results.filter((r) => r.ok).length;
  if (stored > 0) return stored === results.length ? 200 : 202;
  if (framing === MultipartFailure.TotalTooLarge) return 413;
  if (framing !== undefined) return 400;
  return 409;
}

/** Failure Reason for a request whose framing broke at a part: its size (A700) or its bytes (C000). */
function framingReason(err: MultipartError): FailureReason {
  return err.failure === MultipartFailure.TotalTooLarge ? FailureReason.OutOfResources : FailureReason.CannotUnderstand;
}

/** Our own message as a PS3.18 §8.6.3 Warning header value: printable ASCII only, quoted, capped. */
function warningHeader(message: string): string {
  const text = message
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/["\\]/g, "'")
    .slice(0, 200);
  return `299 radscribe "${text}"`;
}

/** How long, and how many bytes, the rest of a refused request body is read after the answer. */
export const LINGER_MS = 5_000;
export const LINGER_MAX_BYTES = 64 * 1024 * 1024;

/**
 * After answering a request whose body we stopped reading (415, 413, broken framing), read and drop
 * what the client is still sending, for at most LINGER_MS / LINGER_MAX_BYTES, then close. Closing at
 * once would leave unread bytes in the socket, and the kernel would answer them with a reset that
 * can destroy our answer in the client before it reads it (RFC 9112 §9.6, "lingering close"). A
 * client that stops sending in time keeps its connection.
 */
function lingerAfterAnswer(req: Request, res: Response): void {
  res.once('finish', () => {
    if (req.complete) return;
    let drained = 0;
    const close = (): void => {
      req.socket.destroy();
    };
    const timer = setTimeout(close, LINGER_MS);
    timer.unref();
    // read() rather than 'data'/resume(): the multipart parser's async iterator still holds a
    // 'readable' listener, which makes resume() a no-op (Node stream docs, "readable" precedence).
    const drain = (): void => {
      for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) {
        drained += chunk.length;
        if (drained > LINGER_MAX_BYTES) {
          close();
          return;
        }
      }
    };
    req.on('readable', drain);
    req.once('end', () => clearTimeout(timer));
    req.once('close', () => clearTimeout(timer));
    drain();
  });
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
  // Liberal in length (Orthanc sends 73 characters), strict in the characters (RFC 2046 bchars).
  const why = boundaryProblem(boundary, MAX_INBOUND_BOUNDARY_LENGTH);
  if (why) throw new RadScribeError(ErrorCode.RequestInvalid, `multipart/related: ${why}`);
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
    const aetParam = typeof req.params.aet === 'string' ? req.params.aet : undefined;
    let calledAeTitle: string | undefined;
    const ctx = {
      via: ReceivedVia.StowRs,
      remoteAddress: req.socket.remoteAddress,
      actor: actorOf(req, res),
      expectedStudyInstanceUid: studyParam,
      calledAeTitle,
    };
    const refuse = async (r: Omit<InstanceRefusal, 'via' | 'remoteAddress' | 'actor'>): Promise<void> => {
      await deps.refusals?.instanceRefused({
        via: ctx.via,
        ...(ctx.remoteAddress ? { remoteAddress: ctx.remoteAddress } : {}),
        ...(ctx.actor ? { actor: ctx.actor } : {}),
        ...(ctx.calledAeTitle ? { calledAeTitle: ctx.calledAeTitle } : {}),
        ...(studyParam && isValidUid(studyParam) ? { studyInstanceUid: studyParam } : {}),
        ...r,
      });
    };
    let boundary: string;
    try {
      // A per-AE path names a local AE (the DIMSE listeners' titles): unknown is 404, refused and
      // audited like every other whole-request refusal, before a byte of the body is read.
      if (aetParam !== undefined) {
        calledAeTitle = resolveLocalAe(aetParam, deps.localAeTitles ?? []);
        ctx.calledAeTitle = calledAeTitle;
      }
      if (studyParam !== undefined && !isValidUid(studyParam)) {
        throw new RadScribeError(ErrorCode.RequestInvalid, 'study in the request URI is not a valid UID');
      }
      ({ boundary } = checkContentType(req.headers['content-type']));
    } catch (err: unknown) {
      // Refused before the body is read (400 / 415): audited, and the unread body is read and
      // dropped for a while after the answer (lingering close).
      const code = errorCodeOf(err);
      await refuse({ code, httpStatus: toHttpStatus(code) });
      lingerAfterAnswer(req, res);
      throw err;
    }
    // Before a byte is spooled: a request that would take the storage below its watermark or reserve
    // is refused whole with 507 Insufficient Storage (RFC 4918 §11.5). A chunked request has no
    // Content-Length; its instances are checked one by one (0xA700) by the sink.
    await deps.sink.admit?.(contentLengthOf(req), ctx);
    const results: PartResult[] = [];
    const started = Date.now();
    let framing: MultipartError | undefined;
    let databaseDown = false;
    // Parts handed out by the parser, and whether the last one was answered before its body had
    // been read to its delimiter (refused while it streamed): a framing failure then belongs to it.
    let seen = 0;
    let lastAnsweredEarly = false;
    try {
      for await (const part of parseMultipart(req, boundary, {
        maxPartBytes: limits.maxPartBytes,
        maxTotalBytes: limits.maxRequestBytes,
      })) {
        seen++;
        lastAnsweredEarly = false;
        const partType = part.headers['content-type'];
        if (part.headerFailure || (partType !== undefined && safeEssence(partType) !== MediaTypes.Dicom)) {
          // Unreadable part headers, or a part that is not a PS3.10 instance: it cannot be
          // understood (PS3.4 C000); the rest of the request still counts.
          const read = await discardHashing(part.body);
          lastAnsweredEarly = read.error !== undefined;
          results.push({ ok: false, failureReason: FailureReason.CannotUnderstand });
          await refuse({
            code: part.headerFailure?.code ?? ErrorCode.MediaTypeUnsupported,
            failureReason: FailureReason.CannotUnderstand,
            part: part.index,
            sha256: read.sha256,
            sizeBytes: read.sizeBytes,
          });
          continue;
        }
        if (databaseDown) {
          // Once the database failed for one part, the rest of this request fails without trying
          // it: each would wait out the same outage (issue 9), and the client retries the request.
          const read = await discardHashing(part.body);
          lastAnsweredEarly = read.error !== undefined;
          results.push({ ok: false, failureReason: FailureReason.OutOfResources });
          continue;
        }
        let file: Awaited<ReturnType<typeof spoolToTempFile>>;
        try {
          file = await spoolToTempFile(part.body, deps.tmpDir, 'stow');
        } catch (err: unknown) {
          if (isMultipartError(err, MultipartFailure.PartTooLarge)) {
            lastAnsweredEarly = true;
            results.push({ ok: false, failureReason: FailureReason.OutOfResources });
            await refuse({
              code: err.code,
              failureReason: FailureReason.OutOfResources,
              part: part.index,
              sizeBytes: limits.maxPartBytes,
            });
            continue;
          }
          if (errorCodeOf(err) === ErrorCode.StorageFull) {
            // The disk filled while this part was spooled (ENOSPC / EDQUOT past the guard): the
            // spool file is gone, the request is answered 507 by the error handler; audited here.
            await refuse({ code: ErrorCode.StorageFull, httpStatus: 507, part: part.index });
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
    } catch (err: unknown) {
      if (!isMultipartError(err)) throw err;
      // The request's framing broke (cut off, malformed, over the total cap): what was stored
      // before stays stored, the part in progress is refused, nothing after it is read.
      framing = err;
    }
    const gone = req.socket.destroyed;
    // A part already refused while it streamed has its answer; the failure that stopped the
    // request there adds none. Otherwise the part being read (or the next one) is refused for it.
    if (framing && !(lastAnsweredEarly && results.length === seen)) {
      const failureReason = framingReason(framing);
      results.push({ ok: false, failureReason });
      await refuse({
        code: framing.code,
        failureReason,
        part: results.length - 1,
        ...(gone ? {} : { httpStatus: stowStatus(results, framing.failure) }),
      });
    }
    if (gone) return;
    if (results.length === 0) {
      await refuse({ code: ErrorCode.RequestInvalid, httpStatus: 400 });
      throw new RadScribeError(ErrorCode.RequestInvalid, 'multipart/related body has no parts');
    }
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
    const status = stowStatus(results, framing?.failure);
    log.info('STOW-RS request done', {
      status,
      stored,
      failed,
      ...(framing ? { framing: framing.failure } : {}),
      studyInstanceUid: studyParam,
      durationMs: Date.now() - started,
    });
    if (framing) {
      res.set('Warning', warningHeader(framing.message));
      if (!req.complete) lingerAfterAnswer(req, res);
    }
    res
      .status(status)
      .type(MediaTypes.DicomJson)
      .send(JSON.stringify(stowResponse(results, `${baseOf(req)}${aePath(calledAeTitle)}`, studyParam)));
  }

  router.post('/studies', storeInstances);
  router.post('/studies/:study', storeInstances);
  // Per-AE STOW-RS (issue 11): the route a study takes can be chosen by URL, as by Called AE in DIMSE.
  router.post('/aets/:aet/studies', storeInstances);
  router.post('/aets/:aet/studies/:study', storeInstances);

  // Errors go to the app's one error handler (app.ts `errorHandler`, STYLE rule 3).
  return router;
}

/** The request's declared body size (RFC 9110 §8.6), 0 when absent or unreadable. */
function contentLengthOf(req: Request): number {
  const n = Number(req.headers['content-length']);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
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
