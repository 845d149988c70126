/**
 * Typed errors, classified once where they happen (STYLE §2.4, rule 2).
 * Policy (retry, HTTP status, DIMSE status, STOW Failure Reason) reads `code`, never `message`.
 */

export const ErrorCode = {
  /** Configuration failed validation at start-up. Permanent. */
  ConfigInvalid: 'config-invalid',
  /** A remote PACS/DICOMweb node could not be reached or answered 5xx/429. Transient: retry. */
  PacsUnavailable: 'pacs-unavailable',
  /** A remote node answered 4xx to STOW/QIDO/WADO. Permanent. */
  PacsRejected: 'pacs-rejected',
  /** Input is not a readable DICOM Part 10 instance (truncated, garbage, wrong lengths). Permanent. */
  DicomInvalid: 'dicom-invalid',
  /** Input is DICOM but we cannot process it (e.g. a transfer syntax no decoder handles). Permanent. */
  DicomUnsupported: 'dicom-unsupported',
  /** Request is malformed at the HTTP/multipart level (wrong Content-Type, bad boundary). */
  RequestInvalid: 'request-invalid',
  /** Media type not supported (HTTP 415). */
  MediaTypeUnsupported: 'media-type-unsupported',
  /** Instance conflicts with the request (e.g. StudyInstanceUID differs from the URL). */
  StudyMismatch: 'study-mismatch',
  /** Disk full, memory cap hit, worker pool saturated. Transient. */
  OutOfResources: 'out-of-resources',
  /** Database unreachable or serialization failure. Transient. */
  DatabaseUnavailable: 'database-unavailable',
  /** Model bundle missing, malformed or inconsistent with its manifest. Permanent. */
  ModelInvalid: 'model-invalid',
  /** ONNX Runtime failed during a run; ambiguous, goes to operator review after retries. */
  InferenceFailed: 'inference-failed',
  /** Work exceeded its time limit. Transient. */
  Timeout: 'timeout',
  /** An SR content tree or document violates its template. Permanent (a bug). */
  SrInvalid: 'sr-invalid',
  /** Resource not found (HTTP 404). */
  NotFound: 'not-found',
  /**
   * The resource was held and is gone for good (HTTP 410, RFC 9110 §15.5.11): instances retention
   * removed, asked for by WADO-RS. Permanent.
   */
  Gone: 'gone',
  /**
   * No representation the request's Accept allows (HTTP 406, PS3.18 §8.7.3.5): a WADO-RS retrieve
   * in a transfer syntax RadScribe does not hold the instance in (it does not transcode). Permanent.
   */
  NotAcceptable: 'not-acceptable',
  /** Anything we did not classify: a bug. */
  Internal: 'internal',
  /** A request body over the configured size (HTTP 413, PS3.18 Table 10.5.3-1). Permanent. */
  PayloadTooLarge: 'payload-too-large',
  /**
   * Input broke a DICOM resource limit or contradicts its own sizes (src/dicom/limits.ts): a deflate
   * bomb, runaway nesting, lengths or frame dimensions beyond the bytes present. Permanent.
   */
  DicomHostile: 'dicom-hostile',
  /**
   * The instance store's file system is below its free-space watermark or reserve, or full (ENOSPC,
   * EDQUOT). HTTP 507 Insufficient Storage (RFC 4918 §11.5), STOW/DIMSE 0xA700 Out of Resources
   * (PS3.4 B.2.3). Transient: retry once space is freed (retention, operator).
   */
  StorageFull: 'storage-full',
  /**
   * No credentials, or credentials that do not verify (unknown, expired or revoked API token, bad
   * JWT): HTTP 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3). Permanent for that credential.
   */
  Unauthenticated: 'unauthenticated',
  /** An authenticated caller whose role does not allow the request: HTTP 403 (RFC 9110 §15.5.4). */
  Forbidden: 'forbidden',
  /** A caller over its request rate: HTTP 429 with Retry-After (RFC 6585 §4). Transient. */
  RateLimited: 'rate-limited',
  /**
   * An export destination already holds an instance with our SOP Instance UID whose content differs
   * from what we sent (its meaningful content, src/export/stored-fingerprint.ts): two objects under
   * one UID (PS3.5 §9.1). Permanent: resending cannot fix it, an operator must decide which is right.
   */
  ExportConflict: 'export-conflict',
  /**
   * The resource's current state does not allow the request (an operator forcing a study that
   * already has a describe job, or one retention removed): HTTP 409 (RFC 9110 §15.5.10). Permanent.
   */
  StateConflict: 'state-conflict',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes a job may retry with backoff; everything else fails the job at once. */
export const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.PacsUnavailable,
  ErrorCode.OutOfResources,
  ErrorCode.DatabaseUnavailable,
  ErrorCode.Timeout,
  ErrorCode.InferenceFailed,
  ErrorCode.StorageFull,
]);

export class RadScribeError extends Error {
  override name = 'RadScribeError';
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Config validation failed; `problems` holds every problem with its dotted path (STYLE §2.5). */
export class ConfigError extends RadScribeError {
  override name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(ErrorCode.ConfigInvalid, `invalid configuration:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

export class DicomError extends RadScribeError {
  override name = 'DicomError';
}

export class DicomwebError extends RadScribeError {
  override name = 'DicomwebError';
  readonly method: string;
  readonly url: string;
  readonly status: number | undefined;
  constructor(
    code: ErrorCode,
    method: string,
    url: string,
    status: number | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, `${method} ${url}: ${message}`, options);
    this.method = method;
    this.url = url;
    this.status = status;
  }
}

export class ModelError extends RadScribeError {
  override name = 'ModelError';
}

export class SrValidationError extends RadScribeError {
  override name = 'SrValidationError';
  constructor(message: string) {
    super(ErrorCode.SrInvalid, message);
  }
}

export function isRadScribeError(err: unknown): err is RadScribeError {
  return err instanceof RadScribeError;
}

/** One string for any thrown value (medplum `normalizeErrorString`). Never include PHI in error messages. */
export function normalizeErrorString(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/**
 * SQLSTATE classes and codes (PostgreSQL Appendix A) that mean "the database cannot serve this now":
 * 08 connection exception, 57P01–57P03 server shutting down or not yet accepting connections,
 * 40001 serialization failure, 40P01 deadlock, 53300 too many connections.
 */
function sqlStateCode(state: string): ErrorCode {
  if (
    state.startsWith('08') ||
    /^57P0[123]$/.test(state) ||
    state === '40001' ||
    state === '40P01' ||
    state === '53300'
  )
    return ErrorCode.DatabaseUnavailable;
  // 53100 disk full, 53200 out of memory.
  if (state.startsWith('53')) return ErrorCode.OutOfResources;
  // 57014 query_canceled: our statement_timeout fired (pool.ts).
  if (state === '57014') return ErrorCode.Timeout;
  return ErrorCode.Internal;
}

/**
 * Classify an unknown thrown value once; unknown errors become `internal`. A network error code
 * (ECONNREFUSED, ECONNRESET, …) says nothing about which peer failed, so it is not guessed here:
 * the code that made the call classifies it (dicomweb-client → pacs-unavailable, db/pool.ts →
 * database-unavailable). PostgreSQL server errors carry an SQLSTATE and a severity.
 */
export function errorCodeOf(err: unknown): ErrorCode {
  if (err instanceof RadScribeError) return err.code;
  const e = err as { code?: unknown; severity?: unknown } | null;
  const code = e?.code;
  // No space or quota left on a file system: the storage, not the process, is out of resources.
  if (code === 'ENOSPC' || code === 'EDQUOT') return ErrorCode.StorageFull;
  if (code === 'EMFILE' || code === 'ENOMEM') return ErrorCode.OutOfResources;
  if (typeof code === 'string' && typeof e?.severity === 'string' && /^[0-9A-Z]{5}$/.test(code))
    return sqlStateCode(code);
  return ErrorCode.Internal;
}

/** Text a client may see for a 5xx: the code's meaning, never the internal message (a path, SQL). */
const CLIENT_TEXT: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.DatabaseUnavailable]: 'the database is unavailable; try again later',
  [ErrorCode.OutOfResources]: 'the server is out of resources; try again later',
  [ErrorCode.PacsUnavailable]: 'a remote PACS is unavailable; try again later',
  [ErrorCode.Timeout]: 'the request took too long',
  [ErrorCode.StorageFull]: 'the server has not enough free storage for this request; try again later',
};

/**
 * The message a client may see for `err`: our own text for a 4xx RadScribeError (routers write it
 * for the client: which parameter, which media type), a fixed text per code otherwise.
 */
export function clientMessage(err: unknown): string {
  const code = errorCodeOf(err);
  if (err instanceof RadScribeError && toHttpStatus(code) < 500) return err.message;
  return CLIENT_TEXT[code] ?? 'internal error';
}

/** HTTP status for an error code; used only by the express error middleware (STYLE rule 3). */
export function toHttpStatus(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.RequestInvalid:
    case ErrorCode.DicomInvalid:
    case ErrorCode.DicomHostile:
    case ErrorCode.ConfigInvalid:
      return 400;
    case ErrorCode.Unauthenticated:
      return 401;
    case ErrorCode.Forbidden:
      return 403;
    case ErrorCode.NotFound:
      return 404;
    case ErrorCode.NotAcceptable:
      return 406;
    case ErrorCode.Gone:
      return 410;
    case ErrorCode.RateLimited:
      return 429;
    case ErrorCode.PayloadTooLarge:
      return 413;
    case ErrorCode.StudyMismatch:
    case ErrorCode.ExportConflict:
    case ErrorCode.StateConflict:
      return 409;
    case ErrorCode.MediaTypeUnsupported:
    case ErrorCode.DicomUnsupported:
      return 415;
    case ErrorCode.OutOfResources:
    case ErrorCode.DatabaseUnavailable:
    case ErrorCode.PacsUnavailable:
      return 503;
    // RFC 4918 §11.5 507 Insufficient Storage, as DICOMweb servers answer a STOW-RS they cannot store.
    case ErrorCode.StorageFull:
      return 507;
    case ErrorCode.Timeout:
      return 504;
    default:
      return 500;
  }
}

/**
 * Seconds a client is asked to wait after a 503 (RFC 9110 §10.2.3 Retry-After): long enough for a
 * database restart or a checkout queue to drain, short enough that a modality's retry is not lost.
 */
export const RETRY_AFTER_SECONDS = 5;
