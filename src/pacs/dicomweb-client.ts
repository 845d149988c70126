import { Readable } from 'node:stream';
import { DicomwebError, ErrorCode, errorCodeOf, normalizeErrorString } from '../errors.js';
import type { DicomJsonDataset } from './dicom-json.js';
import { getNumber, getSequence, getString, isDicomJsonDataset, Tag } from './dicom-json.js';
import {
  MediaTypes,
  multipartRelatedContentType,
  newBoundary,
  parseMediaType,
  wadoAcceptHeader,
} from './media-type.js';
import { multipartBody, multipartBodyLength, parseMultipart } from './multipart.js';

/**
 * Typed DICOMweb user agent on Node's global fetch (js-stack.md §5). Method names are the PS3.18
 * transaction names (dicomweb-client `src/api.js`): QIDO-RS §10.6, WADO-RS §10.4, STOW-RS §10.5.
 * Bodies are streamed both ways; a study is never held in memory.
 */

export type DicomwebAuth =
  | { readonly type: 'basic'; readonly username: string; readonly password: string }
  | { readonly type: 'bearer'; readonly token: string };

export interface DicomwebClientOptions {
  /** Service root, e.g. http://127.0.0.1:8042/dicom-web (no trailing slash needed). */
  readonly baseUrl: string;
  readonly auth?: DicomwebAuth | undefined;
  /** Idle timeout: no response headers or no body bytes for this long → pacs-unavailable. */
  readonly timeoutMs?: number;
  /**
   * Idle timeout of STOW-RS requests (default {@link DEFAULT_DICOMWEB_STORE_TIMEOUT_MS}): a PACS may
   * answer a store only after it has written the instances, later than it answers a search.
   */
  readonly storeTimeoutMs?: number;
}

export const DEFAULT_DICOMWEB_TIMEOUT_MS = 30_000;
export const DEFAULT_DICOMWEB_STORE_TIMEOUT_MS = 30_000;

/** QIDO-RS query parameters beyond the match keys (PS3.18 §8.3.4). */
export interface QidoOptions {
  readonly limit?: number;
  readonly offset?: number;
  readonly includefield?: readonly string[] | 'all';
  readonly fuzzymatching?: boolean;
}

export type InstanceHandler = (body: Readable, headers: Readonly<Record<string, string>>) => Promise<void>;

export interface RetrieveOptions {
  /** Called once per instance, in order; the next instance is read only after it resolves. */
  readonly onInstance: InstanceHandler;
  /**
   * `transfer-syntax` Accept parameter (PS3.18 §8.7.3.5.2): a UID, or `*` for the syntax the server
   * holds; omitted, the server sends its default (Explicit VR Little Endian). The QIDO poller
   * negotiates it (transfer-syntax-negotiation.ts); orthanc-dicomweb 1.7 accepts `*` on study,
   * series and instance retrieval.
   */
  readonly transferSyntax?: string | undefined;
}

export interface StowReferenced {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly retrieveUrl?: string;
  /** (0008,1196) Warning Reason of a stored instance (PS3.18 §10.5.3.3), e.g. 0xB000 coercion. */
  readonly warningReason?: number;
}
export interface StowFailed {
  readonly sopClassUid?: string;
  readonly sopInstanceUid?: string;
  readonly failureReason: number;
}
export interface StowResult {
  readonly httpStatus: number;
  /** The response's HTTP `Warning` header (RFC 7234 §5.5; PS3.18 §8.10.3), as sent. */
  readonly warning?: string;
  readonly retrieveUrl?: string;
  readonly referenced: StowReferenced[];
  readonly failed: StowFailed[];
}

export class DicomwebClient {
  readonly baseUrl: string;
  private readonly authHeader: string | undefined;
  private readonly timeoutMs: number;
  private readonly storeTimeoutMs: number;

  constructor(options: DicomwebClientOptions) {
    const u = new URL(options.baseUrl);
    // Credentials belong in `auth`, never in a URL that ends up in error messages.
    u.username = '';
    u.password = '';
    this.baseUrl = u.toString().replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? DEFAULT_DICOMWEB_TIMEOUT_MS;
    this.storeTimeoutMs = options.storeTimeoutMs ?? DEFAULT_DICOMWEB_STORE_TIMEOUT_MS;
    const a = options.auth;
    this.authHeader =
      a === undefined
        ? undefined
        : a.type === 'basic'
          ? `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}`
          : `Bearer ${a.token}`;
  }

  /** Host of the remote node, for audit (remoteAddress). */
  get host(): string {
    return new URL(this.baseUrl).host;
  }

  // ---- QIDO-RS (PS3.18 §10.6) ----

  searchForStudies(
    query: Readonly<Record<string, string>> = {},
    options: QidoOptions = {},
  ): Promise<DicomJsonDataset[]> {
    return this.search('/studies', query, options, 'searchForStudies');
  }

  searchForSeries(
    studyInstanceUid: string,
    query: Readonly<Record<string, string>> = {},
    options: QidoOptions = {},
  ): Promise<DicomJsonDataset[]> {
    return this.search(`/studies/${enc(studyInstanceUid)}/series`, query, options, 'searchForSeries');
  }

  searchForInstances(
    studyInstanceUid: string,
    seriesInstanceUid?: string,
    query: Readonly<Record<string, string>> = {},
    options: QidoOptions = {},
  ): Promise<DicomJsonDataset[]> {
    const p = seriesInstanceUid
      ? `/studies/${enc(studyInstanceUid)}/series/${enc(seriesInstanceUid)}/instances`
      : `/studies/${enc(studyInstanceUid)}/instances`;
    return this.search(p, query, options, 'searchForInstances');
  }

  // ---- WADO-RS (PS3.18 §10.4) ----

  /** Stream every instance of a study to `onInstance`; resolves to the number of instances. */
  retrieveStudy(studyInstanceUid: string, options: RetrieveOptions): Promise<number> {
    return this.retrieve(`/studies/${enc(studyInstanceUid)}`, options, 'retrieveStudy');
  }

  retrieveSeries(studyInstanceUid: string, seriesInstanceUid: string, options: RetrieveOptions): Promise<number> {
    return this.retrieve(
      `/studies/${enc(studyInstanceUid)}/series/${enc(seriesInstanceUid)}`,
      options,
      'retrieveSeries',
    );
  }

  retrieveInstance(
    studyInstanceUid: string,
    seriesInstanceUid: string,
    sopInstanceUid: string,
    options: RetrieveOptions,
  ): Promise<number> {
    return this.retrieve(
      `/studies/${enc(studyInstanceUid)}/series/${enc(seriesInstanceUid)}/instances/${enc(sopInstanceUid)}`,
      options,
      'retrieveInstance',
    );
  }

  /** Study metadata as DICOM JSON (PS3.18 §10.4.1.1.2); bulk data comes as BulkDataURI. */
  async retrieveStudyMetadata(studyInstanceUid: string): Promise<DicomJsonDataset[]> {
    const url = `${this.baseUrl}/studies/${enc(studyInstanceUid)}/metadata`;
    const { res, done } = await this.request('retrieveStudyMetadata', 'GET', url, { accept: MediaTypes.DicomJson });
    try {
      return await readJsonArray(res, 'retrieveStudyMetadata', url);
    } finally {
      done();
    }
  }

  /**
   * One instance's metadata as DICOM JSON (PS3.18 §10.4.1.1.2,
   * `/studies/{s}/series/{se}/instances/{i}/metadata`): what the PACS holds, to compare with what we
   * sent. 404 throws pacs-rejected (the instance is not there), network/5xx pacs-unavailable.
   */
  async retrieveInstanceMetadata(
    studyInstanceUid: string,
    seriesInstanceUid: string,
    sopInstanceUid: string,
  ): Promise<DicomJsonDataset | undefined> {
    const url = `${this.baseUrl}/studies/${enc(studyInstanceUid)}/series/${enc(seriesInstanceUid)}/instances/${enc(sopInstanceUid)}/metadata`;
    const { res, done } = await this.request('retrieveInstanceMetadata', 'GET', url, {
      accept: MediaTypes.DicomJson,
    });
    try {
      return (await readJsonArray(res, 'retrieveInstanceMetadata', url))[0];
    } finally {
      done();
    }
  }

  // ---- STOW-RS (PS3.18 §10.5) ----

  /**
   * Store instances (file paths are streamed from disk). 200, 202 and 409 come back as a StowResult
   * with the per-instance outcome, so a caller can retry only the failed instances
   * (dicom-sr-and-audit.md §6); every other status throws.
   */
  async storeInstances(
    studyInstanceUid: string | undefined,
    files: ReadonlyArray<string | Uint8Array>,
  ): Promise<StowResult> {
    const url = studyInstanceUid ? `${this.baseUrl}/studies/${enc(studyInstanceUid)}` : `${this.baseUrl}/studies`;
    const boundary = newBoundary();
    const parts = files.map((f) => ({ contentType: MediaTypes.Dicom, body: f }));
    let length: number;
    try {
      length = await multipartBodyLength(parts, boundary);
    } catch (err: unknown) {
      throw new DicomwebError(
        errorCodeOf(err),
        'POST',
        redactUrl(url),
        undefined,
        `storeInstances: cannot read input file: ${normalizeErrorString(err)}`,
        { cause: err },
      );
    }
    const body = multipartBody(parts, boundary);
    const { res, done } = await this.request(
      'storeInstances',
      'POST',
      url,
      {
        accept: MediaTypes.DicomJson,
        'content-type': multipartRelatedContentType(boundary),
        'content-length': String(length),
      },
      body,
      [409],
      this.storeTimeoutMs,
    );
    try {
      const text = await bodyText(res, 'storeInstances', 'POST', url);
      let json: unknown = {};
      if (text.trim() !== '') {
        try {
          json = JSON.parse(text);
        } catch (err: unknown) {
          throw new DicomwebError(
            ErrorCode.PacsRejected,
            'POST',
            redactUrl(url),
            res.status,
            'storeInstances: response is not DICOM JSON',
            { cause: err },
          );
        }
      }
      // Some servers wrap the response dataset in an array.
      const ds = Array.isArray(json) ? json[0] : json;
      const parsed = parseStowResponse(res.status, isDicomJsonDataset(ds) ? ds : {});
      const warning = res.headers.get('warning');
      return warning ? { ...parsed, warning } : parsed;
    } finally {
      done();
    }
  }

  // ---- internals ----

  private async search(
    pathPart: string,
    query: Readonly<Record<string, string>>,
    options: QidoOptions,
    method: string,
  ): Promise<DicomJsonDataset[]> {
    const u = new URL(`${this.baseUrl}${pathPart}`);
    for (const [k, v] of Object.entries(query)) u.searchParams.append(k, v);
    if (options.limit !== undefined) u.searchParams.set('limit', String(options.limit));
    if (options.offset !== undefined) u.searchParams.set('offset', String(options.offset));
    if (options.fuzzymatching !== undefined) u.searchParams.set('fuzzymatching', String(options.fuzzymatching));
    if (options.includefield === 'all') u.searchParams.set('includefield', 'all');
    else for (const f of options.includefield ?? []) u.searchParams.append('includefield', f);
    const url = u.toString();
    const { res, done } = await this.request(method, 'GET', url, { accept: MediaTypes.DicomJson });
    try {
      // PS3.18 §10.6.3.2: 204 No Content when nothing matches.
      if (res.status === 204) return [];
      return await readJsonArray(res, method, url);
    } finally {
      done();
    }
  }

  private async retrieve(pathPart: string, options: RetrieveOptions, method: string): Promise<number> {
    const url = `${this.baseUrl}${pathPart}`;
    const accept = wadoAcceptHeader(options.transferSyntax ? { transferSyntax: options.transferSyntax } : {});
    // identity: the parts are already compressed where it pays (the transfer syntax); a gzipped
    // multipart body only costs both sides CPU and hides the part boundaries from the idle timer.
    const { res, done, touch, abort } = await this.request(method, 'GET', url, {
      accept,
      'accept-encoding': 'identity',
    });
    const fail = (code: ErrorCode, msg: string, cause?: unknown): DicomwebError =>
      new DicomwebError(
        code,
        'GET',
        redactUrl(url),
        res.status,
        `${method}: ${msg}`,
        cause === undefined ? undefined : { cause },
      );
    let boundary: string | undefined;
    try {
      const mt = parseMediaType(res.headers.get('content-type') ?? '');
      if (mt.essence === MediaTypes.MultipartRelated) boundary = mt.params.boundary;
    } catch {
      boundary = undefined;
    }
    if (!boundary || !res.body) {
      await res.body?.cancel().catch(() => undefined);
      done();
      throw fail(ErrorCode.PacsRejected, 'response is not multipart/related with a boundary');
    }
    // The response's web stream is read directly (no Readable in between): the parser takes its
    // chunks as they come. A failure of the response body itself (socket reset, our idle timer) is
    // the PACS's, whatever code reads the part when it happens (the parser or the caller's handler).
    const web = res.body as unknown as AsyncIterable<Uint8Array>;
    let bodyError: unknown;
    const source = (async function* () {
      try {
        for await (const chunk of web) {
          touch();
          yield chunk;
        }
      } catch (e: unknown) {
        bodyError ??= e;
        throw e;
      }
    })();
    let count = 0;
    try {
      for await (const part of parseMultipart(source, boundary)) {
        count++;
        await options.onInstance(part.body, part.headers);
      }
      return count;
    } catch (err: unknown) {
      // The parser leaves its source as is: abort the exchange so the connection stops reading
      // (a read still pending ends with the abort), then close the generator.
      const failedBody = bodyError; // before our own abort fails the body too
      abort();
      void source.return(undefined).catch(() => undefined);
      if (err instanceof DicomwebError) throw err;
      if (failedBody !== undefined)
        throw fail(ErrorCode.PacsUnavailable, `response body failed: ${causeText(failedBody)}`, failedBody);
      // A body cut short by the network or our idle timer is transient; a handler error is the caller's.
      const e = (err as { code?: string; failure?: string } | null) ?? {};
      if (e.failure === 'truncated') throw fail(ErrorCode.PacsUnavailable, 'response ended early', err);
      if (e.failure !== undefined) throw fail(ErrorCode.PacsRejected, normalizeErrorString(err), err);
      throw err;
    } finally {
      done();
    }
  }

  /**
   * One HTTP exchange with an idle timer. Classification happens here once: network error, timeout,
   * 5xx and 429 → pacs-unavailable (retry); other 4xx → pacs-rejected (STYLE §2.4).
   */
  private async request(
    method: string,
    httpMethod: 'GET' | 'POST',
    url: string,
    headers: Record<string, string>,
    body?: Readable,
    extraOk: readonly number[] = [],
    timeoutMs: number = this.timeoutMs,
  ): Promise<{ res: Response; done: () => void; touch: () => void; abort: () => void }> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const touch = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Error(`no data for ${timeoutMs} ms`)), timeoutMs);
    };
    const done = (): void => clearTimeout(timer);
    const abort = (): void => {
      done();
      controller.abort(new Error('response no longer read'));
    };
    touch();
    const h: Record<string, string> = { ...headers };
    if (this.authHeader) h.authorization = this.authHeader;
    const shownUrl = redactUrl(url);
    let res: Response;
    try {
      const init: RequestInit & { duplex?: 'half' } = { method: httpMethod, headers: h, signal: controller.signal };
      if (body) {
        // Never add a 'data' listener to a body someone else reads: it would switch the stream to
        // flowing mode and the bytes emitted before fetch attaches would be lost.
        init.body = tapped(body, touch) as unknown as BodyInit;
        init.duplex = 'half';
      }
      res = await fetch(url, init);
    } catch (err: unknown) {
      done();
      const why = controller.signal.aborted ? `timed out after ${timeoutMs} ms` : `network error: ${causeText(err)}`;
      throw new DicomwebError(ErrorCode.PacsUnavailable, httpMethod, shownUrl, undefined, `${method}: ${why}`, {
        cause: err,
      });
    }
    if (res.ok || extraOk.includes(res.status)) return { res, done, touch, abort };
    done();
    await res.body?.cancel().catch(() => undefined);
    const code = res.status >= 500 || res.status === 429 ? ErrorCode.PacsUnavailable : ErrorCode.PacsRejected;
    throw new DicomwebError(code, httpMethod, shownUrl, res.status, `${method}: HTTP ${res.status}`);
  }
}

/** Re-yield a stream's chunks, resetting the idle timer on each. */
function tapped(source: AsyncIterable<Uint8Array>, touch: () => void): Readable {
  return Readable.from(
    (async function* () {
      for await (const chunk of source) {
        touch();
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

function enc(uid: string): string {
  return encodeURIComponent(uid);
}

function causeText(err: unknown): string {
  const cause = (err as { cause?: unknown } | null)?.cause;
  const code = (cause as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : normalizeErrorString(cause ?? err);
}

/**
 * URL for messages and logs: no credentials, and query values dropped because QIDO match keys may be
 * patient identifiers (PHI never goes in logs, STYLE §2.6).
 */
export function redactUrl(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  const keys = [...new Set(u.searchParams.keys())];
  u.search = '';
  return keys.length > 0 ? `${u.toString()}?${keys.map((k) => `${k}=…`).join('&')}` : u.toString();
}

/** The whole response body as text; a body cut off by the network is the PACS's failure (transient). */
async function bodyText(res: Response, method: string, httpMethod: string, url: string): Promise<string> {
  try {
    return await res.text();
  } catch (err: unknown) {
    throw new DicomwebError(
      ErrorCode.PacsUnavailable,
      httpMethod,
      redactUrl(url),
      res.status,
      `${method}: response body failed: ${causeText(err)}`,
      { cause: err },
    );
  }
}

async function readJsonArray(res: Response, method: string, url: string): Promise<DicomJsonDataset[]> {
  const text = await bodyText(res, method, 'GET', url);
  if (text.trim() === '') return [];
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err: unknown) {
    throw new DicomwebError(
      ErrorCode.PacsRejected,
      'GET',
      redactUrl(url),
      res.status,
      `${method}: response is not DICOM JSON`,
      { cause: err },
    );
  }
  if (!Array.isArray(json)) {
    throw new DicomwebError(
      ErrorCode.PacsRejected,
      'GET',
      redactUrl(url),
      res.status,
      `${method}: expected a DICOM JSON array`,
    );
  }
  return json.filter(isDicomJsonDataset);
}

/** Read the Store Instances Response Module (PS3.18 §10.5.3). */
export function parseStowResponse(httpStatus: number, ds: DicomJsonDataset): StowResult {
  const referenced: StowReferenced[] = [];
  for (const item of getSequence(ds, Tag.ReferencedSOPSequence)) {
    const sopClassUid = getString(item, Tag.ReferencedSOPClassUID);
    const sopInstanceUid = getString(item, Tag.ReferencedSOPInstanceUID);
    if (!sopClassUid || !sopInstanceUid) continue;
    const retrieveUrl = getString(item, Tag.RetrieveURL);
    const warningReason = getNumber(item, Tag.WarningReason);
    referenced.push({
      sopClassUid,
      sopInstanceUid,
      ...(retrieveUrl ? { retrieveUrl } : {}),
      ...(warningReason !== undefined ? { warningReason } : {}),
    });
  }
  const failed: StowFailed[] = getSequence(ds, Tag.FailedSOPSequence).map((item) => {
    const sopClassUid = getString(item, Tag.ReferencedSOPClassUID);
    const sopInstanceUid = getString(item, Tag.ReferencedSOPInstanceUID);
    return {
      ...(sopClassUid ? { sopClassUid } : {}),
      ...(sopInstanceUid ? { sopInstanceUid } : {}),
      // 0x0110 Processing failure when the server gives no reason (PS3.4 Annex B).
      failureReason: getNumber(item, Tag.FailureReason) ?? 0x0110,
    };
  });
  const retrieveUrl = getString(ds, Tag.RetrieveURL);
  return { httpStatus, ...(retrieveUrl ? { retrieveUrl } : {}), referenced, failed };
}
