import { DicomError } from '../errors.js';
import { DicomHeaderError, HeaderFailure, readPart10Header } from './header-reader.js';
import type { DicomLimits } from './limits.js';
import { measureInflated } from './limits.js';
import { TransferSyntax } from './uids.js';

/**
 * The DICOM limits (limits.ts) on a whole Part 10 file held in memory, before dcmjs parses it: dcmjs
 * recurses once per sequence level and inflates a deflated data set (PS3.5 A.5) in one piece, so the
 * header is walked first with the depth, element and length bounds, and a deflated data set is
 * inflated once to count its bytes and discarded. The image-prep worker runs this on every file it
 * opens (stored instances passed the same checks at receipt; a transcoded copy from a PACS did not).
 * A buffer that is not Part 10 (an operator's file without a preamble) is left to the parser.
 */
export async function checkPart10Limits(buf: Uint8Array, limits: DicomLimits): Promise<void> {
  async function* whole(from = 0): AsyncGenerator<Uint8Array> {
    yield buf.subarray(from);
  }
  let dataSetOffset: number;
  let transferSyntaxUid: string;
  try {
    const h = await readPart10Header(whole(), { limits, totalBytes: buf.byteLength });
    dataSetOffset = h.dataSetOffset;
    transferSyntaxUid = h.transferSyntaxUid;
  } catch (err: unknown) {
    if (err instanceof DicomHeaderError && err.failure === HeaderFailure.NotPart10) return;
    throw err;
  }
  if (transferSyntaxUid === TransferSyntax.DeflatedExplicitVrLittleEndian) {
    await measureDeflatedDataSet(whole(dataSetOffset), limits);
  }
}

/**
 * Inflate a deflated data set (PS3.5 A.5) to its end under the inflation limits and return its
 * length; zlib's own failures become header errors (a stream that stops early is truncated, any
 * other is malformed), limit violations stay DicomLimitError. Used at receipt and in the worker.
 */
export async function measureDeflatedDataSet(chunks: AsyncIterable<Uint8Array>, limits: DicomLimits): Promise<number> {
  try {
    return await measureInflated(chunks, limits);
  } catch (err: unknown) {
    if (err instanceof DicomError) throw err;
    const truncated = (err as { code?: unknown } | null)?.code === 'Z_BUF_ERROR';
    throw new DicomHeaderError(
      truncated ? HeaderFailure.Truncated : HeaderFailure.Malformed,
      truncated ? 'input ends inside the deflated data set' : 'deflated data set cannot be inflated',
      { cause: err },
    );
  }
}
