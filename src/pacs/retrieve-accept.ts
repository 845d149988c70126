import { TransferSyntax } from '../dicom/uids.js';
import { ErrorCode, RadScribeError } from '../errors.js';
import { MediaTypes, parseMediaType } from './media-type.js';
import { ORIGINAL_TRANSFER_SYNTAX } from './transfer-syntax-negotiation.js';

/**
 * Accept negotiation of a WADO-RS instance retrieve served by RadScribe (PS3.18 §8.7.3 Acceptable
 * Media Types, §8.7.3.5 transfer syntax; RFC 9110 §12.5.1 Accept). RadScribe serves the bytes it
 * stored and never transcodes, so the only representation of an instance is
 * multipart/related; type="application/dicom" in the syntax it was received in. An Accept allows an
 * instance when one of its media ranges (q > 0) is:
 * - `multipart/related` (type absent or `application/dicom`), `multipart/*` or a full wildcard, with
 *   `transfer-syntax=*` (PS3.18 §8.7.3.5.2: the syntax the origin server holds) or the stored UID;
 * - `multipart/related; type="application/dicom"` with no transfer-syntax: the PS3.18 default,
 *   Explicit VR Little Endian, so only instances held in it;
 * - `* /*` without parameters, or no Accept at all: the client leaves the choice to the server
 *   (RFC 9110 §12.5.1), which is the stored syntax.
 * Anything else (application/dicom single part, application/dicom+json, another syntax) is 406.
 */

/** PS3.18 §8.7.3.5.2: the transfer syntax of application/dicom when the Accept names none. */
export const DEFAULT_RETRIEVE_TRANSFER_SYNTAX: string = TransferSyntax.ExplicitVrLittleEndian;

/** Which stored transfer syntaxes an Accept allows: any (`*`), or these UIDs. */
export interface RetrieveAcceptance {
  readonly any: boolean;
  readonly syntaxes: ReadonlySet<string>;
}

/** Split an Accept value at the commas between media ranges (not inside quoted-strings). */
function mediaRanges(header: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i] as string;
    if (quoted && c === '\\') {
      cur += c + (header[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  out.push(cur);
  return out.map((r) => r.trim()).filter((r) => r !== '');
}

/**
 * What an Accept header allows (see above). Throws not-acceptable (406) when no range can be met by
 * any stored instance; unparseable ranges are ignored (RFC 9110 §12.5.1 lets a server do so).
 */
export function retrieveAcceptance(accept: string | undefined): RetrieveAcceptance {
  if (accept === undefined || accept.trim() === '') return { any: true, syntaxes: new Set() };
  let any = false;
  const syntaxes = new Set<string>();
  for (const range of mediaRanges(accept)) {
    let mt: ReturnType<typeof parseMediaType>;
    try {
      mt = parseMediaType(range);
    } catch {
      continue;
    }
    const q = mt.params.q === undefined ? 1 : Number(mt.params.q);
    if (!(q > 0)) continue;
    const ts = mt.params['transfer-syntax'];
    const type = mt.params.type?.toLowerCase();
    if (mt.essence === '*/*' && ts === undefined && type === undefined) {
      any = true;
      continue;
    }
    const multipart =
      mt.essence === MediaTypes.MultipartRelated || mt.essence === 'multipart/*' || mt.essence === '*/*';
    if (!multipart || (type !== undefined && type !== MediaTypes.Dicom)) continue;
    if (ts === ORIGINAL_TRANSFER_SYNTAX) any = true;
    else syntaxes.add(ts ?? DEFAULT_RETRIEVE_TRANSFER_SYNTAX);
  }
  if (!any && syntaxes.size === 0)
    throw new RadScribeError(
      ErrorCode.NotAcceptable,
      `WADO-RS retrieve is served as ${MediaTypes.MultipartRelated}; type="${MediaTypes.Dicom}" only`,
    );
  return { any, syntaxes };
}

export function acceptsSyntax(a: RetrieveAcceptance, transferSyntaxUid: string): boolean {
  return a.any || a.syntaxes.has(transferSyntaxUid);
}
