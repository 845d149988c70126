import { isSupportedCompressedSyntax } from '../dicom/codecs.js';
import { NATIVE_TRANSFER_SYNTAXES } from '../dicom/frames.js';
import { TransferSyntax } from '../dicom/uids.js';
import { DicomwebError } from '../errors.js';

/**
 * WADO-RS transfer syntax negotiation for the QIDO poller (PS3.18 §8.7.3.5.2 "transfer-syntax"
 * Accept parameter, §8.7.3 Acceptable Media Types). Pure policy; the poller does the requests.
 *
 * Why the original first: asking for Explicit VR Little Endian (the PS3.18 default when no
 * parameter is sent) makes the PACS decode every compressed instance, and a PACS that has no
 * decoder for a syntax refuses the whole study: Orthanc 1.10 with Debian's DCMTK answers 500
 * "Cannot transcode image" for every JPEG 2000 study. `transfer-syntax=*` asks for the syntax the
 * PACS holds, keeps lossless compression lossless and costs the PACS nothing. A transcoded copy
 * is asked for only when what arrives is a syntax RadScribe's own decoders cannot read.
 */

/** PS3.18 §8.7.3.5.2: `*` = whatever syntax the origin server holds the instance in. */
export const ORIGINAL_TRANSFER_SYNTAX = '*';

/** One rung of the ladder: a `transfer-syntax` value, or `undefined` for no parameter (server default). */
export type TransferSyntaxRequest = string | undefined;

/**
 * The syntax asked for when an instance arrives in one no local decoder reads: PS3.18 §8.7.3.5.2
 * names Explicit VR Little Endian the default every origin server must be able to produce.
 */
export const TRANSCODE_TARGET: string = TransferSyntax.ExplicitVrLittleEndian;

/**
 * Whether RadScribe's own decoders read pixel data in `ts`: native encodings (frames.ts, PS3.5
 * §A.1–A.3, A.5) and the compressed syntaxes codecs.ts decodes (PS3.5 Annex A.4).
 */
export function isDecodableTransferSyntax(ts: string): boolean {
  return NATIVE_TRANSFER_SYNTAXES.has(ts) || isSupportedCompressedSyntax(ts);
}

/**
 * HTTP statuses that say "not in that transfer syntax" rather than "not at all". PS3.18 §8.7.3.5
 * prescribes 406 Not Acceptable; in the field servers also answer 400 (orthanc-dicomweb on some
 * Accept forms, reference/js-stack.md §5), 415, and 500/501 when their transcoder fails
 * (Orthanc 1.10: "Not implemented yet: Cannot transcode image"). Each moves to the next rung.
 */
export const NEGOTIATION_REFUSAL_STATUSES: ReadonlySet<number> = new Set([400, 406, 415, 500, 501]);

/** Whether a retrieve failed because of what was asked for, so another transfer syntax may succeed. */
export function isNegotiationRefusal(err: unknown): boolean {
  return err instanceof DicomwebError && err.status !== undefined && NEGOTIATION_REFUSAL_STATUSES.has(err.status);
}

/**
 * Accept `transfer-syntax` values to try, in order, for one retrieve. `configured` is the node's
 * `poll.transferSyntax` (an operator's explicit choice comes first); unset means the original.
 * Then the original, then Explicit VR Little Endian, then no parameter at all (for servers that
 * refuse any parameter); duplicates removed.
 */
export function transferSyntaxLadder(configured?: string): readonly TransferSyntaxRequest[] {
  const rungs: TransferSyntaxRequest[] = [
    configured ?? ORIGINAL_TRANSFER_SYNTAX,
    ORIGINAL_TRANSFER_SYNTAX,
    TRANSCODE_TARGET,
    undefined,
  ];
  return rungs.filter((r, i) => rungs.indexOf(r) === i);
}

/**
 * After an instance arrived in `received` for a request of `requested`: the syntax to ask for a
 * transcoded copy in, or undefined to keep what arrived. Only an undecodable original is
 * transcoded; an operator who configured a specific syntax gets exactly that (the pipeline's
 * describe-time transcode fallback still covers it, pipeline/transcode-fallback.ts).
 */
export function transcodeTargetFor(received: string, requested: TransferSyntaxRequest): string | undefined {
  if (isDecodableTransferSyntax(received)) return undefined;
  if (requested !== ORIGINAL_TRANSFER_SYNTAX && requested !== undefined) return undefined;
  return received === TRANSCODE_TARGET ? undefined : TRANSCODE_TARGET;
}

/** How an Accept rung reads in logs and audit detail. */
export function describeRequest(r: TransferSyntaxRequest): string {
  return r === undefined ? 'default' : r;
}
