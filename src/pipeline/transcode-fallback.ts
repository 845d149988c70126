import { buffer as readAll } from 'node:stream/consumers';
import { type Part10Instance, parsePart10 } from '../dicom/dataset.js';
import { TransferSyntax } from '../dicom/uids.js';
import { DicomError, ErrorCode } from '../errors.js';
import type { DicomwebClient } from '../pacs/dicomweb-client.js';

/**
 * When no decoder here handles an instance's transfer syntax (DicomError dicom-unsupported: JPEG
 * progressive .55, JPEG XL .111, or anything newer), ask the node it came from for the same instance
 * in Explicit VR Little Endian (PS3.18 §8.7.3.5.2 WADO-RS `transfer-syntax` Accept parameter) and
 * decode that. The PACS does the transcoding (Orthanc 1.10 through DCMTK/GDCM), so the pixels are
 * its decoder's, not ours; the result says so. Lossy sources stay lossy; only the container changes.
 */

/** Where an instance can be fetched again. */
export interface RemoteInstanceRef {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
}

/**
 * WADO-RS retrieve of one instance as Explicit VR Little Endian; checks the PACS really transcoded.
 * Returns the parsed copy and its Part 10 bytes (the gateway keeps the copy as a file for the
 * image-prep worker; describe-study decides when to ask, see `DescribeStudyDeps.transcode`).
 */
export async function retrieveTranscoded(
  client: DicomwebClient,
  ref: RemoteInstanceRef,
): Promise<{ instance: Part10Instance; bytes: Uint8Array }> {
  let body: Uint8Array | undefined;
  await client.retrieveInstance(ref.studyInstanceUid, ref.seriesInstanceUid, ref.sopInstanceUid, {
    transferSyntax: TransferSyntax.ExplicitVrLittleEndian,
    onInstance: async (stream) => {
      const b = await readAll(stream);
      body ??= new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    },
  });
  if (body === undefined) {
    throw new DicomError(ErrorCode.DicomUnsupported, `PACS returned no transcoded copy of ${ref.sopInstanceUid}`);
  }
  const copy = parsePart10(body);
  if (copy.transferSyntaxUid !== TransferSyntax.ExplicitVrLittleEndian) {
    throw new DicomError(
      ErrorCode.DicomUnsupported,
      `PACS answered transfer syntax ${copy.transferSyntaxUid}, not ${TransferSyntax.ExplicitVrLittleEndian}, for ${ref.sopInstanceUid}`,
    );
  }
  return { instance: copy, bytes: body };
}
