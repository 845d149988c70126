import { DicomError, ErrorCode } from '../errors.js';
import type { NaturalDataset, Part10Instance } from './dataset.js';
import { checkFrameGeometry, type DicomLimits } from './limits.js';
import { TransferSyntax } from './uids.js';

/**
 * Frames of a Pixel Data element (PS3.5 §8.1 native, §8.2 / Annex A.4 encapsulated).
 * Works on the dcmjs parse only; no I/O, no decoding (that is pixel-decoder.ts).
 */

/** Transfer syntaxes whose Pixel Data is native (not encapsulated), PS3.5 §10 and §A.1–A.3, A.5. */
export const NATIVE_TRANSFER_SYNTAXES: ReadonlySet<string> = new Set<TransferSyntax>([
  TransferSyntax.ImplicitVrLittleEndian,
  TransferSyntax.ExplicitVrLittleEndian,
  TransferSyntax.DeflatedExplicitVrLittleEndian, // dcmjs inflates while parsing
  TransferSyntax.ExplicitVrBigEndian, // retired
]);

/** Image Pixel Module attributes (PS3.3 C.7.6.3) that decide the frame layout. */
export interface PixelModule {
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly highBit: number;
  readonly pixelRepresentation: 0 | 1;
  readonly planarConfiguration: 0 | 1;
  readonly photometricInterpretation: string;
  readonly numberOfFrames: number;
  /** Which element carries the pixels: (7FE0,0010) integer, (7FE0,0008) float, (7FE0,0009) double. */
  readonly pixelKeyword: 'PixelData' | 'FloatPixelData' | 'DoubleFloatPixelData';
}

export interface FrameSource {
  readonly pixelModule: PixelModule;
  readonly transferSyntaxUid: string;
  /** True when Pixel Data is encapsulated (PS3.5 §A.4): frame bytes are a compressed bitstream. */
  readonly encapsulated: boolean;
  readonly numberOfFrames: number;
  /**
   * Bytes of frame `index` (0-based). Native: exactly the frame's bytes, little endian (Explicit VR
   * Big Endian values are swapped here, PS3.5 §A.3)
   * (BitsAllocated 1: re-aligned so the frame's first pixel is bit 0 of byte 0). Encapsulated: the
   * whole compressed bitstream of the frame (fragments joined).
   */
  frameBytes(index: number): Uint8Array;
}

function intAttr(d: NaturalDataset, kw: string, tag: string, fallback?: number): number {
  let v = d[kw];
  if (Array.isArray(v)) v = v[0];
  if (typeof v === 'string' && v.trim() !== '') v = Number(v);
  if (v === undefined || v === null || v === '') {
    if (fallback !== undefined) return fallback;
    throw new DicomError(ErrorCode.DicomInvalid, `Image Pixel Module: missing ${kw} ${tag}`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new DicomError(ErrorCode.DicomInvalid, `Image Pixel Module: invalid ${kw} ${tag}`);
  }
  return v;
}

/** Read and validate the Image Pixel Module (PS3.3 C.7.6.3.1) and Number of Frames (C.7.6.6). */
export function readPixelModule(d: NaturalDataset): PixelModule {
  const pixelKeyword =
    d.PixelData !== undefined
      ? 'PixelData'
      : d.FloatPixelData !== undefined
        ? 'FloatPixelData'
        : d.DoubleFloatPixelData !== undefined
          ? 'DoubleFloatPixelData'
          : undefined;
  if (pixelKeyword === undefined) throw new DicomError(ErrorCode.DicomInvalid, 'no Pixel Data (7FE0,0010/0008/0009)');
  const rows = intAttr(d, 'Rows', '(0028,0010)');
  const columns = intAttr(d, 'Columns', '(0028,0011)');
  const samplesPerPixel = intAttr(d, 'SamplesPerPixel', '(0028,0002)', 1);
  const bitsAllocated = intAttr(d, 'BitsAllocated', '(0028,0100)');
  // Float/double pixel data has no Bits Stored / High Bit (PS3.3 C.7.6.24); use Bits Allocated.
  const bitsStored = intAttr(d, 'BitsStored', '(0028,0101)', bitsAllocated);
  const highBit = intAttr(d, 'HighBit', '(0028,0102)', bitsStored - 1);
  const pr = intAttr(d, 'PixelRepresentation', '(0028,0103)', 0);
  const pc = intAttr(d, 'PlanarConfiguration', '(0028,0006)', 0);
  const numberOfFrames = intAttr(d, 'NumberOfFrames', '(0028,0008)', 1);
  let pi = typeof d.PhotometricInterpretation === 'string' ? d.PhotometricInterpretation.trim() : '';
  // ACR-NEMA 1.0/2.0 files (Recognition Code (0008,0010), retired) often lack Photometric
  // Interpretation: it was only added for colour. A grey ACR-NEMA image is MONOCHROME2 (as GDCM reads it).
  if (pi === '' && samplesPerPixel === 1 && isAcrNema(d)) pi = 'MONOCHROME2';
  const problems: string[] = [];
  if (rows === 0 || columns === 0) problems.push('Rows/Columns must be > 0');
  // 12: ACR-NEMA packed pixels (two samples in three bytes); pixel-decoder.ts unpacks them.
  if (![1, 8, 12, 16, 32, 64].includes(bitsAllocated))
    problems.push(`BitsAllocated ${bitsAllocated} not 1/8/12/16/32/64`);
  if (bitsStored < 1 || bitsStored > bitsAllocated) problems.push(`BitsStored ${bitsStored} outside 1..BitsAllocated`);
  if (highBit >= bitsAllocated) problems.push(`HighBit ${highBit} >= BitsAllocated`);
  if (pr > 1) problems.push(`PixelRepresentation ${pr} not 0/1`);
  if (pc > 1) problems.push(`PlanarConfiguration ${pc} not 0/1`);
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3 && samplesPerPixel !== 4)
    problems.push(`SamplesPerPixel ${samplesPerPixel} not 1/3/4`);
  if (numberOfFrames < 1) problems.push('NumberOfFrames must be >= 1');
  if (pi === '') problems.push('missing PhotometricInterpretation (0028,0004)');
  if (problems.length > 0) throw new DicomError(ErrorCode.DicomInvalid, `Image Pixel Module: ${problems.join('; ')}`);
  return {
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation: pr as 0 | 1,
    planarConfiguration: pc as 0 | 1,
    photometricInterpretation: pi,
    numberOfFrames,
    pixelKeyword,
  };
}

function isAcrNema(d: NaturalDataset): boolean {
  const v = d.RETIRED_RecognitionCode ?? d.RecognitionCode;
  return /^ACR-NEMA/.test(String(Array.isArray(v) ? v[0] : (v ?? '')));
}

/**
 * Native frame length in bits. YBR_FULL_422 / YBR_PARTIAL_422 native data stores two luminance
 * and one pair of chrominance samples per two pixels (PS3.3 C.7.6.3.1.2), i.e. 2 samples per pixel.
 */
export function nativeFrameBits(pm: PixelModule): number {
  const subsampled =
    pm.photometricInterpretation === 'YBR_FULL_422' || pm.photometricInterpretation === 'YBR_PARTIAL_422';
  const spp = subsampled && pm.samplesPerPixel === 3 ? 2 : pm.samplesPerPixel;
  return pm.rows * pm.columns * spp * pm.bitsAllocated;
}

function toU8(b: unknown): Uint8Array {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  throw new DicomError(ErrorCode.DicomInvalid, 'Pixel Data value is not binary');
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1 && parts[0]) return parts[0];
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

function frameIndexCheck(index: number, n: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= n) {
    throw new DicomError(ErrorCode.DicomInvalid, `frame index ${index} out of range 0..${n - 1}`);
  }
}

/** Does a fragment start a new compressed frame? JPEG SOI FFD8 (ITU T.81 B.1.1.3), J2K SOC FF4F (T.800 A.4.1), JP2 signature box. */
function startsCodestream(f: Uint8Array): boolean {
  if (f.byteLength < 2 || f[0] !== 0xff) {
    // JP2 file format: 0000000C 6A502020 signature box (T.800 I.5.1).
    return f.byteLength >= 8 && f[4] === 0x6a && f[5] === 0x50 && f[6] === 0x20 && f[7] === 0x20;
  }
  return f[1] === 0xd8 || f[1] === 0x4f;
}

function fragmentsToFrames(
  fragments: readonly Uint8Array[],
  numberOfFrames: number,
  d: NaturalDataset,
): Uint8Array[][] {
  const nf = fragments.length;
  // dcmjs already groups fragments by the Basic Offset Table when there is one (PS3.5 A.4), so an
  // equal count means one frame per item either way.
  if (nf === numberOfFrames) return fragments.map((f) => [f]);
  if (nf < numberOfFrames) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `encapsulated Pixel Data has ${nf} fragments for ${numberOfFrames} frames (PS3.5 A.4: a fragment holds one frame at most)`,
    );
  }
  // Extended Offset Table (7FE0,0001), PS3.5 A.4 / PS3.3 C.7.6.3.1.8: byte offsets of each frame's
  // first fragment Item tag, counted from the first fragment's Item tag (after the empty BOT).
  const eot = d.ExtendedOffsetTable;
  if (eot !== undefined && eot !== null) {
    const raw = toU8(Array.isArray(eot) ? eot[0] : eot);
    if (raw.byteLength >= numberOfFrames * 8) {
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const starts: number[] = [];
      for (let i = 0; i < numberOfFrames; i++) starts.push(Number(dv.getBigUint64(i * 8, true)));
      const fragOffsets: number[] = [];
      let pos = 0;
      for (const f of fragments) {
        fragOffsets.push(pos);
        pos += 8 + f.byteLength; // Item tag (4) + length (4) + value
      }
      const frames: Uint8Array[][] = starts.map(() => []);
      let k = -1;
      for (let j = 0; j < nf; j++) {
        while (k + 1 < numberOfFrames && fragOffsets[j] === starts[k + 1]) k++;
        const frame = frames[k];
        const frag = fragments[j];
        if (frame === undefined || frag === undefined) {
          throw new DicomError(
            ErrorCode.DicomInvalid,
            'Extended Offset Table (7FE0,0001) does not match the fragments',
          );
        }
        frame.push(frag);
      }
      if (frames.every((f) => f.length > 0)) return frames;
      throw new DicomError(ErrorCode.DicomInvalid, 'Extended Offset Table (7FE0,0001) does not match the fragments');
    }
  }
  if (numberOfFrames === 1) return [fragments.slice()];
  // No offset table: a new frame begins with each codestream start marker.
  const frames: Uint8Array[][] = [];
  for (const f of fragments) {
    const last = frames[frames.length - 1];
    if (startsCodestream(f) || last === undefined) frames.push([f]);
    else last.push(f);
  }
  if (frames.length === numberOfFrames) return frames;
  throw new DicomError(
    ErrorCode.DicomInvalid,
    `cannot map ${nf} fragments to ${numberOfFrames} frames: no offset table and ${frames.length} codestream starts`,
  );
}

/**
 * The DICOM limits on an instance's frames, before anything is decoded (issue 9): one frame's and
 * all frames' decoded size against the bounds, and native frames against the Pixel Data bytes the
 * parse holds. Throws DicomLimitError (dicom-hostile); an invalid Image Pixel Module throws
 * DicomError (dicom-invalid) as getFrames would.
 */
export function checkFrameLimits(inst: Part10Instance, limits: DicomLimits): void {
  const d = withRawNumberOfFrames(inst);
  const pm = readPixelModule(d);
  const native = NATIVE_TRANSFER_SYNTAXES.has(inst.transferSyntaxUid) || pm.pixelKeyword !== 'PixelData';
  const value = d[pm.pixelKeyword];
  const bytes = native
    ? (Array.isArray(value) ? value : [value]).reduce((n: number, v) => n + toU8(v).byteLength, 0)
    : undefined;
  checkFrameGeometry(
    {
      rows: pm.rows,
      columns: pm.columns,
      samplesPerPixel: pm.samplesPerPixel,
      bitsAllocated: pm.bitsAllocated,
      numberOfFrames: pm.numberOfFrames,
      photometricInterpretation: pm.photometricInterpretation,
    },
    limits,
    bytes,
  );
}

/** Locate the frames of an instance's pixel data (native or encapsulated). */
export function getFrames(inst: Part10Instance): FrameSource {
  const d = withRawNumberOfFrames(inst);
  strayItemCheck(inst);
  const pm = readPixelModule(d);
  const ts = inst.transferSyntaxUid;
  const value = d[pm.pixelKeyword];
  const items = (Array.isArray(value) ? value : [value]).map(toU8);
  const encapsulated = !NATIVE_TRANSFER_SYNTAXES.has(ts) && pm.pixelKeyword === 'PixelData';
  const n = pm.numberOfFrames;
  if (encapsulated) {
    if (items.length === 0) throw new DicomError(ErrorCode.DicomInvalid, 'encapsulated Pixel Data has no fragments');
    const frames = fragmentsToFrames(items, n, d);
    return {
      pixelModule: pm,
      transferSyntaxUid: ts,
      encapsulated,
      numberOfFrames: n,
      frameBytes(index: number): Uint8Array {
        frameIndexCheck(index, n);
        return concat(frames[index] ?? []);
      },
    };
  }
  const data =
    inst.transferSyntaxUid === TransferSyntax.ExplicitVrBigEndian
      ? swapToLittleEndian(concat(items), pm, inst.dict[PIXEL_TAGS[pm.pixelKeyword]]?.vr)
      : concat(items);
  const frameBits =
    pm.pixelKeyword === 'FloatPixelData'
      ? pm.rows * pm.columns * pm.samplesPerPixel * 32
      : pm.pixelKeyword === 'DoubleFloatPixelData'
        ? pm.rows * pm.columns * pm.samplesPerPixel * 64
        : nativeFrameBits(pm);
  // Odd-length values carry one pad byte (PS3.5 §7.1.1), so only "too short" is an error.
  if (data.byteLength * 8 < frameBits * n) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `native Pixel Data is ${data.byteLength} bytes; ${Math.ceil((frameBits * n) / 8)} expected for ${n} frame(s)`,
    );
  }
  return {
    pixelModule: pm,
    transferSyntaxUid: ts,
    encapsulated,
    numberOfFrames: n,
    frameBytes(index: number): Uint8Array {
      frameIndexCheck(index, n);
      if (frameBits % 8 === 0) {
        const len = frameBits / 8;
        return data.subarray(index * len, (index + 1) * len);
      }
      return extractBits(data, index * frameBits, frameBits);
    },
  };
}

const ITEM_TAGS: ReadonlySet<string> = new Set(['FFFEE000', 'FFFEE00D', 'FFFEE0DD']);

/**
 * An Item, Item Delimitation or Sequence Delimitation tag (PS3.5 §7.5) at the top level of the data
 * set means a sequence or item length before it is wrong (e.g. an SQ of length 0 followed by its
 * items), and dcmjs stopped reading there. Say so instead of the misleading "no Pixel Data".
 */
function strayItemCheck(inst: Part10Instance): void {
  if (Object.keys(PIXEL_TAGS).some((kw) => inst.dataset[kw] !== undefined)) return;
  const tags = Object.keys(inst.dict);
  const at = tags.findIndex((t) => ITEM_TAGS.has(t.toUpperCase()));
  if (at < 0) return;
  const before = tags[at - 1];
  const where = before === undefined ? 'at the start' : `after (${before.slice(0, 4)},${before.slice(4)})`;
  throw new DicomError(
    ErrorCode.DicomInvalid,
    `Item tag (FFFE,${(tags[at] ?? '').slice(4)}) outside any sequence ${where} (PS3.5 §7.5): a sequence or item length is wrong; the data set could not be read up to Pixel Data`,
  );
}

/**
 * dcmjs naturalizes an IS padded with NUL instead of space (a common PS3.5 §6.2 violation) to null;
 * recover Number of Frames (0028,0008) from the raw value rather than silently assuming 1.
 */
function withRawNumberOfFrames(inst: Part10Instance): NaturalDataset {
  const d = inst.dataset;
  if (d.NumberOfFrames !== null && !(Array.isArray(d.NumberOfFrames) && d.NumberOfFrames[0] === null)) return d;
  const raw = (inst.dict['00280008'] as { _rawValue?: unknown } | undefined)?._rawValue;
  const text = String(Array.isArray(raw) ? raw[0] : (raw ?? '')).replace(/[\0\s]+/g, '');
  return /^[0-9]+$/.test(text) ? { ...d, NumberOfFrames: Number(text) } : d;
}

const PIXEL_TAGS = { PixelData: '7FE00010', FloatPixelData: '7FE00008', DoubleFloatPixelData: '7FE00009' } as const;

/**
 * Explicit VR Big Endian (PS3.5 §A.3, retired) swaps the bytes of each word. Samples of 16 bits or
 * more swap per sample; 1- and 8-bit samples in OW are packed into 16-bit words and swap per word;
 * OB is a byte stream and stays as it is. Swapped over the whole value, because 8-bit frames of odd
 * size need not start on a word boundary.
 */
function swapToLittleEndian(bytes: Uint8Array, pm: PixelModule, vr: string | undefined): Uint8Array {
  const width = pm.bitsAllocated >= 16 ? pm.bitsAllocated / 8 : vr === 'OW' ? 2 : 0;
  if (width === 0) return bytes;
  const out = new Uint8Array(bytes.byteLength);
  const whole = bytes.byteLength - (bytes.byteLength % width);
  for (let i = 0; i < whole; i += width) {
    for (let k = 0; k < width; k++) out[i + k] = bytes[i + width - 1 - k] ?? 0;
  }
  return out;
}

/**
 * BitsAllocated 1 frames need not start on a byte boundary (PS3.5 §8.1.1: bits are packed LSB first
 * across frame boundaries). Copy `count` bits starting at `bitOffset` so the frame starts at bit 0.
 */
function extractBits(src: Uint8Array, bitOffset: number, count: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(count / 8));
  for (let i = 0; i < count; i++) {
    const b = bitOffset + i;
    if (((src[b >> 3] ?? 0) >> (b & 7)) & 1) out[i >> 3] = (out[i >> 3] ?? 0) | (1 << (i & 7));
  }
  return out;
}
