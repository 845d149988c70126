import { DicomError, ErrorCode } from '../errors.js';
import { decodeCompressedFrame } from './codecs.js';
import type { Part10Instance } from './dataset.js';
import { type FrameSource, getFrames, type PixelModule } from './frames.js';

/** Interleaved sample arrays a decoded frame can hold. */
export type PixelArray = Uint8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array;

/**
 * One decoded frame: samples masked to Bits Stored and sign-extended (PS3.5 §8.1.1), colour-by-pixel
 * (Planar Configuration 0, PS3.3 C.7.6.3.1.3). BitsAllocated 1 is unpacked to one 0/1 byte per pixel;
 * packed BitsAllocated 12 (ACR-NEMA) to 16-bit samples, and the frame then reads bitsAllocated 16.
 */
export interface DecodedFrame {
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly highBit: number;
  readonly pixelRepresentation: 0 | 1;
  /** After decoding: e.g. a YBR_FULL JPEG decoded to RGB reads 'RGB'. */
  readonly photometricInterpretation: string;
  readonly planarConfiguration: 0;
  readonly data: PixelArray;
}

export interface DecodeOptions {
  /**
   * Convert native YBR_FULL / YBR_FULL_422 to RGB (PS3.3 C.7.6.3.1.2). Default true. With false,
   * YBR_FULL_422 is still upsampled to one Y/Cb/Cr triplet per pixel but stays YBR_FULL.
   */
  readonly convertYbrToRgb?: boolean;
}

/** Decode frame `index` (0-based) of an instance. Throws DicomError (dicom-invalid / dicom-unsupported). */
export async function decodeFrame(
  inst: Part10Instance,
  index: number,
  options: DecodeOptions = {},
): Promise<DecodedFrame> {
  return decodeFrameFrom(getFrames(inst), index, options);
}

/** As decodeFrame, for callers that already hold the FrameSource (avoid re-mapping fragments per frame). */
export async function decodeFrameFrom(
  src: FrameSource,
  index: number,
  options: DecodeOptions = {},
): Promise<DecodedFrame> {
  const pm = src.pixelModule;
  const bytes = src.frameBytes(index);
  const convert = options.convertYbrToRgb ?? true;
  if (pm.pixelKeyword !== 'PixelData') return floatFrame(src, bytes);
  // ACR-NEMA packed 12-bit samples (BitsAllocated 12) exist only natively; no codec defines them.
  if (pm.bitsAllocated === 12 && (src.encapsulated || pm.samplesPerPixel !== 1)) {
    throw new DicomError(
      ErrorCode.DicomUnsupported,
      `BitsAllocated 12 is supported for native single-sample (ACR-NEMA packed) Pixel Data only (transfer syntax ${src.transferSyntaxUid}, ${pm.samplesPerPixel} samples)`,
    );
  }

  let raw: Uint8Array;
  let pi = pm.photometricInterpretation;
  let planar: 0 | 1 = pm.planarConfiguration;
  if (src.encapsulated) {
    const out = await decodeCompressedFrame(src.transferSyntaxUid, bytes, pm);
    raw = out.bytes;
    pi = out.photometricInterpretation;
    planar = out.planarConfiguration;
  } else {
    raw = bytes;
  }

  // Codecs return one byte per sample for 1-bit images (e.g. a J2K codestream of depth 1).
  if (pm.bitsAllocated === 1 && src.encapsulated && raw.byteLength >= pm.rows * pm.columns * pm.samplesPerPixel) {
    return { ...header(pm, pi), data: raw.slice(0, pm.rows * pm.columns * pm.samplesPerPixel).map((v) => v & 1) };
  }
  if (pm.bitsAllocated === 1)
    return { ...header(pm, pi), data: unpackBits(raw, pm.rows * pm.columns * pm.samplesPerPixel) };

  // Native YBR_FULL_422 holds 2 samples per pixel (Y0 Y1 Cb Cr); upsample to full-resolution YBR_FULL.
  if (!src.encapsulated && (pi === 'YBR_FULL_422' || pi === 'YBR_PARTIAL_422') && pm.samplesPerPixel === 3) {
    raw = upsample422(raw, pm);
    if (pi === 'YBR_FULL_422') pi = 'YBR_FULL';
    planar = 0;
  }
  let samples = pm;
  if (pm.bitsAllocated === 12) {
    raw = unpack12(raw, pm.rows * pm.columns * pm.samplesPerPixel);
    samples = { ...pm, bitsAllocated: 16 };
  }
  let data = normaliseSamples(raw, samples);
  if (planar === 1 && pm.samplesPerPixel > 1) data = interleave(data, pm.samplesPerPixel);
  if (convert && pi === 'YBR_FULL' && pm.samplesPerPixel === 3 && pm.bitsAllocated === 8) {
    data = ybrFullToRgb(data as Uint8Array);
    pi = 'RGB';
  }
  return { ...header(samples, pi), data };
}

function header(pm: PixelModule, pi: string): Omit<DecodedFrame, 'data'> {
  return {
    rows: pm.rows,
    columns: pm.columns,
    samplesPerPixel: pm.samplesPerPixel,
    bitsAllocated: pm.bitsAllocated,
    bitsStored: pm.bitsStored,
    highBit: pm.highBit,
    pixelRepresentation: pm.pixelRepresentation,
    photometricInterpretation: pi,
    planarConfiguration: 0,
  };
}

/** Float Pixel Data (7FE0,0008) / Double Float Pixel Data (7FE0,0009), PS3.3 C.7.6.24; doubles narrow to float32. */
function floatFrame(src: FrameSource, bytes: Uint8Array): DecodedFrame {
  const pm = src.pixelModule;
  const n = pm.rows * pm.columns * pm.samplesPerPixel;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = true; // frames.ts already swapped Big Endian values
  const data = new Float32Array(n);
  const dbl = pm.pixelKeyword === 'DoubleFloatPixelData';
  for (let i = 0; i < n; i++) data[i] = dbl ? dv.getFloat64(i * 8, le) : dv.getFloat32(i * 4, le);
  return { ...header(pm, pm.photometricInterpretation), bitsAllocated: 32, bitsStored: 32, highBit: 31, data };
}

/** Bits packed LSB first (PS3.5 §8.1.1, Annex D) → one 0/1 byte per sample. */
function unpackBits(raw: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = ((raw[i >> 3] ?? 0) >> (i & 7)) & 1;
  return out;
}

/**
 * Packed 12-bit samples (ACR-NEMA 2.0, BitsAllocated 12): a little-endian bit stream, sample i in
 * bits 12i … 12i+11 (PS3.5 §8.1.1 packing, as for BitsAllocated 1), i.e. bytes b0 b1 b2 hold
 * s0 = b0 | (b1 & 0x0F) << 8 and s1 = b1 >> 4 | b2 << 4. Out: 16-bit little-endian words.
 */
function unpack12(raw: Uint8Array, count: number): Uint8Array {
  if (raw.byteLength * 2 < count * 3) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `frame holds ${raw.byteLength} bytes, ${Math.ceil((count * 3) / 2)} expected`,
    );
  }
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const b = (i >> 1) * 3;
    const b0 = raw[b] ?? 0;
    const b1 = raw[b + 1] ?? 0;
    const b2 = raw[b + 2] ?? 0;
    out[i] = i % 2 === 0 ? b0 | ((b1 & 0x0f) << 8) : (b1 >> 4) | (b2 << 4);
  }
  return new Uint8Array(out.buffer);
}

function upsample422(raw: Uint8Array, pm: PixelModule): Uint8Array {
  if (pm.bitsAllocated !== 8) {
    throw new DicomError(ErrorCode.DicomUnsupported, 'native YBR_FULL_422 with BitsAllocated != 8 is not supported');
  }
  const pixels = pm.rows * pm.columns;
  const out = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p += 2) {
    const s = p * 2; // 4 bytes per pixel pair
    const y0 = raw[s] ?? 0;
    const y1 = raw[s + 1] ?? 0;
    const cb = raw[s + 2] ?? 0;
    const cr = raw[s + 3] ?? 0;
    out.set([y0, cb, cr], p * 3);
    if (p + 1 < pixels) out.set([y1, cb, cr], (p + 1) * 3);
  }
  return out;
}

/**
 * Little-endian raw samples → typed array of BitsAllocated width, shifted so High Bit is the top of
 * Bits Stored, masked to Bits Stored and sign-extended when Pixel Representation is 1 (PS3.5 §8.1.1).
 * Signed 8-bit data widens to Int16Array (there is no Int8 variant in PixelArray).
 */
function normaliseSamples(raw: Uint8Array, pm: PixelModule): PixelArray {
  const n = pm.rows * pm.columns * pm.samplesPerPixel;
  const bs = pm.bitsStored;
  const shift = pm.highBit + 1 - bs;
  const signed = pm.pixelRepresentation === 1;
  const bytesPer = pm.bitsAllocated / 8;
  if (raw.byteLength < n * bytesPer) {
    throw new DicomError(ErrorCode.DicomInvalid, `frame holds ${raw.byteLength} bytes, ${n * bytesPer} expected`);
  }
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read =
    bytesPer === 1
      ? (i: number) => dv.getUint8(i)
      : bytesPer === 2
        ? (i: number) => dv.getUint16(i * 2, true)
        : bytesPer === 4
          ? (i: number) => dv.getUint32(i * 4, true)
          : undefined;
  if (read === undefined) {
    throw new DicomError(
      ErrorCode.DicomUnsupported,
      `integer Pixel Data with BitsAllocated ${pm.bitsAllocated} is not supported`,
    );
  }
  const out: PixelArray =
    bytesPer === 1
      ? signed
        ? new Int16Array(n)
        : new Uint8Array(n)
      : bytesPer === 2
        ? signed
          ? new Int16Array(n)
          : new Uint16Array(n)
        : signed
          ? new Int32Array(n)
          : new Uint32Array(n);
  // Fast paths: nothing to mask (the typed array's own wrap-around does the sign extension), or
  // integer bit operations for up to 16 bits, which cover nearly every image (CT/MR/CR 12–16 bits).
  if (shift === 0 && bs === pm.bitsAllocated) {
    if (bytesPer === 1 && !signed) return raw.slice(0, n);
    if (bytesPer > 1) {
      for (let i = 0; i < n; i++) out[i] = read(i);
      return out;
    }
  }
  if (bytesPer <= 2) {
    const m = (1 << bs) - 1;
    const ext = 32 - bs;
    const wide =
      bytesPer === 2 && raw.byteOffset % 2 === 0 ? new Uint16Array(raw.buffer, raw.byteOffset, n) : undefined;
    for (let i = 0; i < n; i++) {
      const v = ((wide !== undefined ? (wide[i] ?? 0) : read(i)) >> shift) & m;
      out[i] = signed ? (v << ext) >> ext : v;
    }
    return out;
  }
  const mask = bs >= 32 ? 0xffffffff : 2 ** bs - 1;
  const signBit = 2 ** (bs - 1);
  for (let i = 0; i < n; i++) {
    let v = Math.floor(read(i) / 2 ** shift) % (mask + 1);
    if (signed && v >= signBit) v -= mask + 1;
    out[i] = v;
  }
  return out;
}

/** Planar Configuration 1 (RRR…GGG…BBB…) → colour-by-pixel (PS3.3 C.7.6.3.1.3). */
function interleave(data: PixelArray, spp: number): PixelArray {
  const n = data.length / spp;
  const out = new (data.constructor as new (len: number) => PixelArray)(data.length);
  for (let s = 0; s < spp; s++) {
    for (let i = 0; i < n; i++) out[i * spp + s] = data[s * n + i] ?? 0;
  }
  return out;
}

/** YBR_FULL → RGB, PS3.3 C.7.6.3.1.2 (ITU-R BT.601 full range), rounded and clipped to 8 bits. */
export function ybrFullToRgb(ybr: Uint8Array): Uint8Array {
  const out = new Uint8Array(ybr.length);
  const clip = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));
  for (let i = 0; i + 2 < ybr.length; i += 3) {
    const y = ybr[i] ?? 0;
    const cb = (ybr[i + 1] ?? 0) - 128;
    const cr = (ybr[i + 2] ?? 0) - 128;
    out[i] = clip(y + 1.402 * cr);
    out[i + 1] = clip(y - 0.344136 * cb - 0.714136 * cr);
    out[i + 2] = clip(y + 1.772 * cb);
  }
  return out;
}
