import { open } from 'node:fs/promises';
import { type InstanceIdentity, instanceIdentity, type NaturalDataset } from '../dicom/dataset.js';
import { NATIVE_TRANSFER_SYNTAXES } from '../dicom/frames.js';
import { DicomHeaderError, HeaderFailure, type Part10Header, readPart10Header } from '../dicom/header-reader.js';
import { measureDeflatedDataSet } from '../dicom/instance-limits.js';
import { checkFrameGeometry, DEFAULT_DICOM_LIMITS, type DicomLimits } from '../dicom/limits.js';
import { TransferSyntax } from '../dicom/uids.js';
import type { InstanceHeader } from './types.js';

/**
 * Read and validate the header of a received file once, at ingest, without reading its pixels
 * (issue 8: a 2 GB multi-frame instance is accepted with bounded memory). The file is streamed
 * through the Part 10 header reader (src/dicom/header-reader.ts) until Pixel Data; the pixel data
 * element is then checked against the file's size with a few positional reads, so a truncated
 * instance is refused now (0xC000 Cannot Understand, PS3.4 B.2.3), not when the pipeline opens it.
 *
 * The DICOM limits (src/dicom/limits.ts, issue 9) are applied here, for STOW-RS and WADO-RS alike:
 * the header reader bounds nesting, element count and declared lengths; a deflated data set is
 * inflated once, counted and discarded, so a deflate bomb is refused before it is stored; and the
 * frame dimensions are checked against the decoded-size bounds and the native pixel bytes present.
 */

export interface ReceivedHeader {
  readonly identity: InstanceIdentity;
  readonly header: InstanceHeader;
  /** Size of the file as it is on disk. */
  readonly sizeBytes: number;
}

/**
 * The top-level attributes ingest reads (PS3.3 C.12.1 SOP Common, C.7.2.1 General Study, C.7.3.1
 * General Series, C.7.6.1 General Image, C.7.6.3 Image Pixel, C.7.6.6 Multi-frame; C.7.4.1 for
 * Body Part Examined), as group << 16 | element. Only these are decoded by dcmjs (issue 14: a CT
 * header holds hundreds of elements, and decoding them all was most of the cost of a receipt's
 * header read); every element is still walked and bounded by the header reader.
 */
export const INGEST_HEADER_TAGS: ReadonlySet<number> = new Set([
  0x00080005, // Specific Character Set: the text below is decoded under it
  0x00080016, // SOP Class UID
  0x00080018, // SOP Instance UID
  0x00080060, // Modality
  0x0008103e, // Series Description
  0x00180015, // Body Part Examined
  0x0020000d, // Study Instance UID
  0x0020000e, // Series Instance UID
  0x00200011, // Series Number
  0x00200013, // Instance Number
  0x00280002, // Samples per Pixel
  0x00280004, // Photometric Interpretation
  0x00280008, // Number of Frames
  0x00280010, // Rows
  0x00280011, // Columns
  0x00280100, // Bits Allocated
]);

/** Read chunk for the header stream: a typical header fits in one. */
const HEADER_READ_CHUNK_BYTES = 64 * 1024;

/** First value of a naturalized attribute (dcmjs gives a scalar for VM 1, an array otherwise). */
function first(v: unknown): unknown {
  return Array.isArray(v) ? v[0] : v;
}

/** An IS or US value as a 32-bit integer (the column type); anything else is null. */
function integer(v: unknown): number | null {
  const x = first(v);
  const n = typeof x === 'number' ? x : typeof x === 'string' && x.trim() !== '' ? Number(x.trim()) : Number.NaN;
  return Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff ? n : null;
}

/** A text value, multiple values joined by `\` (PS3.5 §6.4); empty becomes null. */
function text(v: unknown): string | null {
  const parts = (Array.isArray(v) ? v : [v]).filter(
    (x): x is string | number => typeof x === 'string' || typeof x === 'number',
  );
  const s = parts
    .map((x) => String(x).trim())
    .join('\\')
    .replace(/^\\+$/, '');
  return s === '' ? null : s;
}

/**
 * The InstanceHeader columns from a header read (PS3.3 C.7.3.1, C.7.6.1, C.7.6.3, C.7.6.6, C.12.1).
 * Number of Frames defaults to 1 when absent or not a positive integer: a single-frame object.
 */
export function instanceHeaderOf(h: Part10Header, id: InstanceIdentity): InstanceHeader {
  const d: NaturalDataset = h.instance.dataset;
  const frames = integer(d.NumberOfFrames);
  return {
    sopClassUid: id.sopClassUid,
    transferSyntaxUid: id.transferSyntaxUid,
    seriesInstanceUid: id.seriesInstanceUid,
    modality: id.modality ?? null,
    instanceNumber: integer(d.InstanceNumber),
    seriesNumber: integer(d.SeriesNumber),
    numberOfFrames: frames !== null && frames >= 1 ? frames : 1,
    rows: integer(d.Rows),
    columns: integer(d.Columns),
    photometricInterpretation: text(d.PhotometricInterpretation),
    bodyPartExamined: text(d.BodyPartExamined),
    seriesDescription: text(d.SeriesDescription),
    specificCharacterSet: h.specificCharacterSet,
    hasPixelData: h.pixelData !== undefined,
  };
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** The file from `from` in chunks; the reader stops pulling at Pixel Data. */
async function* chunksOf(fh: FileHandle, from = 0): AsyncGenerator<Uint8Array> {
  let position = from;
  for (;;) {
    const buf = Buffer.allocUnsafe(HEADER_READ_CHUNK_BYTES);
    const { bytesRead } = await fh.read(buf, 0, buf.byteLength, position);
    if (bytesRead === 0) return;
    position += bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

/**
 * The pixel data element's value lies within the file. A defined length must fit (PS3.5 §7.1.1);
 * an undefined length is encapsulated (PS3.5 A.4): its item headers are read at their offsets, each
 * fragment skipped, up to the Sequence Delimitation Item. Reads 8 bytes per fragment, never pixels.
 */
async function checkPixelData(fh: FileHandle, size: number, h: Part10Header): Promise<void> {
  const p = h.pixelData;
  // A deflated data set's offsets are in the inflated stream; inflating to the end would read the pixels.
  if (p?.valueOffset === undefined) return;
  if (p.length !== undefined) {
    if (p.valueOffset + p.length > size) {
      throw new DicomHeaderError(
        HeaderFailure.Truncated,
        `Pixel Data (${p.tag}) declares ${p.length} bytes but the file ends ${size - p.valueOffset} bytes after its header`,
      );
    }
    return;
  }
  const le = h.transferSyntaxUid !== TransferSyntax.ExplicitVrBigEndian;
  let pos = p.valueOffset;
  for (;;) {
    const item = await readAt(fh, pos, 8);
    if (item.byteLength < 8) {
      throw new DicomHeaderError(
        HeaderFailure.Truncated,
        `encapsulated Pixel Data (${p.tag}) ends without a delimiter`,
      );
    }
    const group = le ? item.readUInt16LE(0) : item.readUInt16BE(0);
    const element = le ? item.readUInt16LE(2) : item.readUInt16BE(2);
    const len = le ? item.readUInt32LE(4) : item.readUInt32BE(4);
    if (group === 0xfffe && element === 0xe0dd) return;
    if (group !== 0xfffe || element !== 0xe000 || len === 0xffffffff) {
      throw new DicomHeaderError(
        HeaderFailure.Malformed,
        `encapsulated Pixel Data (${p.tag}) holds a non-item element`,
      );
    }
    pos += 8 + len;
    if (pos > size) {
      throw new DicomHeaderError(
        HeaderFailure.Truncated,
        `a fragment of Pixel Data (${p.tag}) runs past the end of the file`,
      );
    }
  }
}

/**
 * A deflated data set (PS3.5 A.5) inflated to its end and counted, never kept: a bomb is refused by
 * the inflation bounds, a stream that stops early as truncated, and the native Pixel Data's
 * declared length is checked against the inflated bytes (what checkPixelData does with the file
 * size for the other syntaxes). Returns the inflated length.
 */
async function checkDeflated(fh: FileHandle, h: Part10Header, limits: DicomLimits): Promise<number> {
  const inflated = await measureDeflatedDataSet(chunksOf(fh, h.dataSetOffset), limits);
  const p = h.pixelData;
  if (p?.length !== undefined && p.dataSetValueOffset + p.length > inflated) {
    throw new DicomHeaderError(
      HeaderFailure.Truncated,
      `Pixel Data (${p.tag}) declares ${p.length} bytes but the inflated data set ends ${inflated - p.dataSetValueOffset} bytes after its header`,
    );
  }
  return inflated;
}

/** An Image Pixel Module integer (US) from the naturalized header, or undefined. */
function pixelInt(d: NaturalDataset, kw: string): number | undefined {
  const v = first(d[kw]);
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/**
 * Frame dimensions against the decoded-size bounds and, for native pixel data, against the bytes
 * the Pixel Data element holds (PS3.5 §8.1.1). Skipped when the module is incomplete: the pipeline
 * refuses such an image itself (dicom-invalid), and a non-image object has no frames.
 */
function checkGeometry(h: Part10Header, header: InstanceHeader, limits: DicomLimits): void {
  const p = h.pixelData;
  const d = h.instance.dataset;
  const bitsAllocated =
    pixelInt(d, 'BitsAllocated') ?? (p?.tag === '7FE00008' ? 32 : p?.tag === '7FE00009' ? 64 : undefined);
  if (!p || header.rows === null || header.columns === null || bitsAllocated === undefined) return;
  const native = NATIVE_TRANSFER_SYNTAXES.has(h.transferSyntaxUid) && p.length !== undefined;
  checkFrameGeometry(
    {
      rows: header.rows,
      columns: header.columns,
      samplesPerPixel: pixelInt(d, 'SamplesPerPixel') ?? 1,
      bitsAllocated,
      numberOfFrames: header.numberOfFrames,
      photometricInterpretation: header.photometricInterpretation,
    },
    limits,
    native ? p.length : undefined,
  );
}

/**
 * Read a received file's header: stream it to Pixel Data, extract and validate the identifying
 * UIDs and the stored header, and check the pixel data against the file size and the DICOM limits.
 * Throws DicomError (dicom-invalid) for anything the sender must fix, DicomLimitError
 * (dicom-hostile) for a broken limit; file system errors propagate unclassified.
 */
export async function readReceivedHeader(
  filePath: string,
  options: { readonly maxHeaderBytes?: number; readonly limits?: DicomLimits } = {},
): Promise<ReceivedHeader> {
  const limits = options.limits ?? DEFAULT_DICOM_LIMITS;
  const fh = await open(filePath, 'r');
  try {
    const { size } = await fh.stat();
    const h = await readPart10Header(chunksOf(fh), {
      ...(options.maxHeaderBytes !== undefined ? { maxHeaderBytes: options.maxHeaderBytes } : {}),
      limits,
      totalBytes: size,
      keepTopLevel: INGEST_HEADER_TAGS,
    });
    const identity = instanceIdentity(h.instance);
    if (h.transferSyntaxUid === TransferSyntax.DeflatedExplicitVrLittleEndian) await checkDeflated(fh, h, limits);
    else await checkPixelData(fh, size, h);
    const header = instanceHeaderOf(h, identity);
    checkGeometry(h, header, limits);
    return { identity, header, sizeBytes: size };
  } finally {
    await fh.close();
  }
}
