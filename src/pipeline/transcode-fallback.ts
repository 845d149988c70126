import { buffer as readAll } from 'node:stream/consumers';
import { type Part10Instance, parsePart10 } from '../dicom/dataset.js';
import { type DecodedFrame, decodeFrame } from '../dicom/pixel-decoder.js';
import { DicomError, ErrorCode, errorCodeOf } from '../errors.js';
import { childLogger } from '../logger.js';
import type { DicomwebClient } from '../pacs/dicomweb-client.js';

/**
 * When no decoder here handles an instance's transfer syntax (DicomError dicom-unsupported: JPEG
 * progressive .55, JPEG XL .111, or anything newer), ask the node it came from for the same instance
 * in Explicit VR Little Endian (PS3.18 §8.7.3.5.2 WADO-RS `transfer-syntax` Accept parameter) and
 * decode that. The PACS does the transcoding (Orthanc 1.10 through DCMTK/GDCM), so the pixels are
 * its decoder's, not ours; the result says so. Lossy sources stay lossy; only the container changes.
 */

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/** Where an instance can be fetched again. */
export interface RemoteInstanceRef {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
}

export interface DecodeWithFallbackResult {
  readonly frame: DecodedFrame;
  /** The instance the frame came from: the original, or the PACS's transcoded copy. */
  readonly instance: Part10Instance;
  /** True when the PACS transcoded it (log and audit this: the decoder was not ours). */
  readonly transcoded: boolean;
}

const log = childLogger('transcode-fallback');

/**
 * Decode `frameIndex` of `instance`; on dicom-unsupported and when `remote` is given, retrieve the
 * instance in Explicit VR Little Endian from `client` and decode that instead. Any other error, or
 * a failed retrieve, is thrown unchanged (its code decides retry, STYLE §2.4).
 */
export async function decodeFrameWithTranscodeFallback(
  instance: Part10Instance,
  frameIndex: number,
  remote: { readonly client: DicomwebClient; readonly ref: RemoteInstanceRef } | undefined,
): Promise<DecodeWithFallbackResult> {
  try {
    return { frame: await decodeFrame(instance, frameIndex), instance, transcoded: false };
  } catch (err) {
    if (errorCodeOf(err) !== ErrorCode.DicomUnsupported || remote === undefined) throw err;
    log.info('decoder does not support the transfer syntax; asking the PACS to transcode', {
      sopInstanceUid: remote.ref.sopInstanceUid,
      transferSyntaxUid: instance.transferSyntaxUid,
    });
    const copy = await retrieveTranscoded(remote.client, remote.ref);
    return { frame: await decodeFrame(copy, frameIndex), instance: copy, transcoded: true };
  }
}

/** WADO-RS retrieve of one instance as Explicit VR Little Endian; checks the PACS really transcoded. */
export async function retrieveTranscoded(client: DicomwebClient, ref: RemoteInstanceRef): Promise<Part10Instance> {
  return (await retrieveTranscodedPart10(client, ref)).instance;
}

/** As retrieveTranscoded, also returning the Part 10 bytes (to store the copy as a file). */
export async function retrieveTranscodedPart10(
  client: DicomwebClient,
  ref: RemoteInstanceRef,
): Promise<{ instance: Part10Instance; bytes: Uint8Array }> {
  let body: Uint8Array | undefined;
  await client.retrieveInstance(ref.studyInstanceUid, ref.seriesInstanceUid, ref.sopInstanceUid, {
    transferSyntax: EXPLICIT_VR_LITTLE_ENDIAN,
    onInstance: async (stream) => {
      const b = await readAll(stream);
      body ??= new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    },
  });
  if (body === undefined) {
    throw new DicomError(ErrorCode.DicomUnsupported, `PACS returned no transcoded copy of ${ref.sopInstanceUid}`);
  }
  const copy = parsePart10(body);
  if (copy.transferSyntaxUid !== EXPLICIT_VR_LITTLE_ENDIAN) {
    throw new DicomError(
      ErrorCode.DicomUnsupported,
      `PACS answered transfer syntax ${copy.transferSyntaxUid}, not ${EXPLICIT_VR_LITTLE_ENDIAN}, for ${ref.sopInstanceUid}`,
    );
  }
  return { instance: copy, bytes: body };
}
