import { randomBytes } from 'node:crypto';
import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * Media types as DICOMweb uses them (PS3.18 §8.7). Parameters are parsed and written per
 * RFC 7231 §3.1.1.1: a value that is not a `token` must be a quoted-string. Servers differ in how
 * strict they are: .NET servers reject `type=application/dicom` unquoted because `/` is a tspecial
 * (dcmjs#113, dicomweb-client#30), so we always quote such values.
 */

/** Media types named by PS3.18 §8.7.3 that RadScribe reads or writes. Closed set. */
export const MediaTypes = {
  /** PS3.10 file, one instance (PS3.18 §8.7.3.3.1). */
  Dicom: 'application/dicom',
  /** DICOM JSON model (PS3.18 Annex F). */
  DicomJson: 'application/dicom+json',
  /** DICOM XML metadata (PS3.19 Native DICOM Model). */
  DicomXml: 'application/dicom+xml',
  /** RFC 2387 container for multiple DICOM parts. */
  MultipartRelated: 'multipart/related',
  /** Uncompressed bulk data / frames. */
  OctetStream: 'application/octet-stream',
} as const;
export type MediaTypes = (typeof MediaTypes)[keyof typeof MediaTypes];

export interface MediaType {
  /** Lower-cased `type/subtype`, e.g. `multipart/related`. */
  readonly essence: string;
  /** Parameter names lower-cased; values unquoted, case preserved (boundary is case-sensitive). */
  readonly params: Readonly<Record<string, string>>;
}

// RFC 7230 §3.2.6 tchar.
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function invalid(header: string, why: string): RadScribeError {
  // The header is protocol text, not PHI; cap it so a hostile header cannot flood logs.
  return new RadScribeError(ErrorCode.RequestInvalid, `invalid media type "${header.slice(0, 200)}": ${why}`);
}

/**
 * Parse one media type (`type/subtype *( OWS ";" OWS parameter )`). Throws RadScribeError(request-invalid).
 * Duplicate parameters keep the first occurrence (RFC 7231 leaves this undefined).
 */
export function parseMediaType(header: string): MediaType {
  let i = 0;
  const n = header.length;
  const skipOws = (): void => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && TOKEN_RE.test(header[i] as string)) i++;
    return header.slice(start, i);
  };
  skipOws();
  const type = readToken();
  if (!type || header[i] !== '/') throw invalid(header, 'expected type/subtype');
  i++;
  const subtype = readToken();
  if (!subtype) throw invalid(header, 'expected subtype');
  const params: Record<string, string> = {};
  for (;;) {
    skipOws();
    if (i >= n) break;
    if (header[i] !== ';') throw invalid(header, `unexpected character at ${i}`);
    i++;
    skipOws();
    if (i >= n) break; // tolerate a trailing ";"
    const name = readToken().toLowerCase();
    if (!name || header[i] !== '=') throw invalid(header, 'expected parameter name=value');
    i++;
    let value: string;
    if (header[i] === '"') {
      // quoted-string with quoted-pair (RFC 7230 §3.2.6).
      i++;
      let v = '';
      for (;;) {
        if (i >= n) throw invalid(header, 'unterminated quoted-string');
        const c = header[i] as string;
        if (c === '"') {
          i++;
          break;
        }
        if (c === '\\') {
          if (i + 1 >= n) throw invalid(header, 'dangling escape');
          v += header[i + 1];
          i += 2;
          continue;
        }
        v += c;
        i++;
      }
      value = v;
    } else {
      value = readToken();
      if (!value) throw invalid(header, `empty value for parameter ${name}`);
    }
    if (!(name in params)) params[name] = value;
  }
  return { essence: `${type}/${subtype}`.toLowerCase(), params };
}

/** Quote a parameter value unless it is a token (RFC 7231 §3.1.1.1). */
export function formatParameterValue(value: string): string {
  if (TOKEN_RE.test(value)) return value;
  return `"${value.replace(/(["\\])/g, '\\$1')}"`;
}

/** Write a media type with parameters in insertion order, quoting where needed. */
export function formatMediaType(essence: string, params: Readonly<Record<string, string | undefined>> = {}): string {
  let out = essence;
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    out += `; ${k}=${formatParameterValue(v)}`;
  }
  return out;
}

/**
 * A fresh boundary: 1–70 bcharsnospace (RFC 2046 §5.1.1). 32 random hex characters make a collision
 * with payload bytes negligible, which is what lets the writer stream without scanning the payload.
 */
export function newBoundary(): string {
  return `radscribe-${randomBytes(16).toString('hex')}`;
}

/** `multipart/related; type="application/dicom"; boundary=…` (PS3.18 §8.7.3.3.1, RFC 2387). */
export function multipartRelatedContentType(boundary: string, partType: string = MediaTypes.Dicom): string {
  return formatMediaType(MediaTypes.MultipartRelated, { type: partType, boundary });
}

export interface WadoAcceptOptions {
  /**
   * `transfer-syntax` parameter (PS3.18 §8.7.3.5.2). `'*'` asks for the stored syntax (what the
   * QIDO poller asks first, transfer-syntax-negotiation.ts); omitted, the server may transcode to
   * Explicit VR Little Endian, the PS3.18 default.
   */
  readonly transferSyntax?: string;
  /** Part media type; defaults to application/dicom. */
  readonly partType?: string;
}

/**
 * Accept header for WADO-RS instance retrieval. `transfer-syntax` is a separate parameter, never
 * inside the quoted `type=` (dicom-microscopy-viewer#32: Google answers 406 to that form).
 */
export function wadoAcceptHeader(options: WadoAcceptOptions = {}): string {
  return formatMediaType(MediaTypes.MultipartRelated, {
    type: options.partType ?? MediaTypes.Dicom,
    'transfer-syntax': options.transferSyntax,
  });
}
