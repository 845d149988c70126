import { DicomError, ErrorCode } from '../errors.js';
import type { NaturalDataset } from './dataset.js';
import type { DecodedFrame, PixelArray } from './pixel-decoder.js';
import { ybrFullToRgb } from './pixel-decoder.js';
import { expandSegmentedLut } from './segmented-lut.js';

/**
 * Render a decoded frame to 8-bit display values as a radiologist's viewer would (PS3.4 Annex N
 * grayscale pipeline; PS3.3 C.11): Modality LUT → VOI LUT → Presentation LUT, with MONOCHROME1
 * shown so that brighter means denser; colour images to 8-bit RGB.
 */

/** An 8-bit image, interleaved, row-major. */
export interface RenderedImage {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly data: Uint8Array;
}

/** VOI LUT Function (0028,1056), PS3.3 C.11.2.1.3. */
export const VoiLutFunction = {
  Linear: 'LINEAR',
  LinearExact: 'LINEAR_EXACT',
  Sigmoid: 'SIGMOID',
} as const;
export type VoiLutFunction = (typeof VoiLutFunction)[keyof typeof VoiLutFunction];

export interface VoiWindow {
  readonly center: number;
  readonly width: number;
  readonly fn: VoiLutFunction;
}

function first(v: unknown): unknown {
  return Array.isArray(v) ? v[0] : v;
}

function num(v: unknown): number | undefined {
  const x = first(v);
  const n = typeof x === 'string' ? Number(x) : x;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

function item(v: unknown, i = 0): NaturalDataset | undefined {
  const x = Array.isArray(v) ? v[i] : v;
  return typeof x === 'object' && x !== null && !ArrayBuffer.isView(x) && !(x instanceof ArrayBuffer)
    ? (x as NaturalDataset)
    : undefined;
}

/**
 * Attribute lookup for enhanced multi-frame objects (PS3.3 C.7.6.16): the frame's Per-Frame
 * Functional Groups item, then the Shared Functional Groups, then the top level.
 */
function functionalGroup(d: NaturalDataset, frameIndex: number, macro: string): NaturalDataset | undefined {
  const items = d.PerFrameFunctionalGroupsSequence;
  // One item per frame (C.7.6.16.1). dcmjs drops empty items, so a short sequence would hand frame
  // k the window of frame k+1: refuse rather than render with another frame's values.
  const frames = num(d.NumberOfFrames) ?? (d.NumberOfFrames === undefined ? 1 : undefined);
  if (Array.isArray(items) && items.length > 0 && frames !== undefined && items.length !== frames) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `Per-Frame Functional Groups Sequence (5200,9230) has ${items.length} items for ${frames} frames (PS3.3 C.7.6.16.1)`,
    );
  }
  const perFrame = item(items, frameIndex);
  const shared = item(d.SharedFunctionalGroupsSequence);
  return item(perFrame?.[macro]) ?? item(shared?.[macro]);
}

/** The window that applies: Window Center/Width (first value) with its VOI LUT Function, C.11.2.1.2. */
export function voiWindowOf(d: NaturalDataset, frameIndex = 0): VoiWindow | undefined {
  const src = functionalGroup(d, frameIndex, 'FrameVOILUTSequence') ?? d;
  const center = num(src.WindowCenter);
  const width = num(src.WindowWidth);
  if (center === undefined || width === undefined) return undefined;
  const f = String(first(src.VOILUTFunction) ?? 'LINEAR').trim();
  const fn = f === VoiLutFunction.LinearExact ? f : f === VoiLutFunction.Sigmoid ? f : VoiLutFunction.Linear;
  // LINEAR needs width >= 1, the others width > 0 (C.11.2.1.2.1, C.11.2.1.3.1/2); otherwise ignore the window.
  if (fn === VoiLutFunction.Linear ? width < 1 : width <= 0) return undefined;
  return { center, width, fn };
}

/** Apply a VOI window to one modality value, output 0..255 (not rounded). */
export function applyVoiWindow(x: number, w: VoiWindow): number {
  const ymax = 255;
  const { center: c, width } = w;
  switch (w.fn) {
    case VoiLutFunction.Linear: {
      // PS3.3 C.11.2.1.2.1
      if (x <= c - 0.5 - (width - 1) / 2) return 0;
      if (x > c - 0.5 + (width - 1) / 2) return ymax;
      return ((x - (c - 0.5)) / (width - 1) + 0.5) * ymax;
    }
    case VoiLutFunction.LinearExact: {
      // PS3.3 C.11.2.1.3.2
      if (x <= c - width / 2) return 0;
      if (x > c + width / 2) return ymax;
      return ((x - c) / width + 0.5) * ymax;
    }
    default:
      // PS3.3 C.11.2.1.3.1
      return ymax / (1 + Math.exp((-4 * (x - c)) / width));
  }
}

/** A LUT from an LUT Descriptor (first-mapped value, bits) and LUT Data, PS3.3 C.11.1.1.1. */
interface Lut {
  readonly firstMapped: number;
  readonly entries: Uint16Array;
  readonly bits: number;
}

function toBytes(v: unknown): Uint8Array | undefined {
  const x = first(v);
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  return undefined;
}

function readLut(descriptor: unknown, data: unknown, what: string): Lut {
  const desc = Array.isArray(descriptor) ? descriptor.map(Number) : [];
  const raw = toBytes(data);
  const bytes = raw;
  if (desc.length < 3) throw new DicomError(ErrorCode.DicomInvalid, `${what}: LUT Descriptor needs 3 values`);
  let n = desc[0] ?? 0;
  if (n === 0) n = 65536; // C.11.1.1.1: 0 means 2^16 entries
  let firstMapped = desc[1] ?? 0;
  const bits = desc[2] ?? 16;
  let entries: Uint16Array;
  if (bytes !== undefined) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    entries = new Uint16Array(n);
    // 8-bit entries may be packed one per byte or one per 16-bit word; tell them apart by length.
    const perByte = bits <= 8 && bytes.byteLength < n * 2;
    for (let i = 0; i < n; i++) {
      if (perByte) entries[i] = bytes[i] ?? 0;
      else entries[i] = i * 2 + 1 < bytes.byteLength ? dv.getUint16(i * 2, true) : 0;
    }
  } else if (Array.isArray(data) && data.every((x) => typeof x === 'number')) {
    entries = Uint16Array.from(data as number[]);
  } else {
    throw new DicomError(ErrorCode.DicomInvalid, `${what}: missing LUT Data`);
  }
  // A signed first-mapped value may be read back as unsigned (US vs SS descriptor ambiguity, C.11.1.1.1).
  if (firstMapped > 32767 && firstMapped <= 65535) firstMapped -= 65536;
  return { firstMapped, entries, bits };
}

function lutLookup(lut: Lut, x: number): number {
  const i = Math.round(x) - lut.firstMapped;
  const last = lut.entries.length - 1;
  return lut.entries[i < 0 ? 0 : Math.min(i, last)] ?? 0;
}

/** Modality LUT (PS3.3 C.11.1): LUT sequence if present, else Rescale Slope/Intercept. */
function modalityTransform(d: NaturalDataset, frameIndex: number): (x: number) => number {
  const seq = item(d.ModalityLUTSequence);
  if (seq !== undefined) {
    const lut = readLut(seq.LUTDescriptor, seq.LUTData, 'Modality LUT Sequence (0028,3000)');
    return (x) => lutLookup(lut, x);
  }
  const src = functionalGroup(d, frameIndex, 'PixelValueTransformationSequence') ?? d;
  const slope = num(src.RescaleSlope) ?? 1;
  const intercept = num(src.RescaleIntercept) ?? 0;
  return slope === 1 && intercept === 0 ? (x) => x : (x) => x * slope + intercept;
}

function clampRound(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

/** Largest stored-value range rendered through a lookup table (16-bit data has at most 65 536). */
const MAX_LUT_RANGE = 1 << 20;

/**
 * The VOI stage (PS3.3 C.11.2): first window, else first VOI LUT Sequence item, else the frame's
 * min–max (DCMTK +Wm). `range()` is only called for the min–max case.
 */
function voiFunction(d: NaturalDataset, frameIndex: number, range: () => [number, number]): (x: number) => number {
  const win = voiWindowOf(d, frameIndex);
  if (win !== undefined) return (x) => applyVoiWindow(x, win);
  const voiSeq = item(d.VOILUTSequence);
  if (voiSeq !== undefined) {
    const lut = readLut(voiSeq.LUTDescriptor, voiSeq.LUTData, 'VOI LUT Sequence (0028,3010)');
    const max = 2 ** lut.bits - 1;
    return (x) => (lutLookup(lut, x) / max) * 255;
  }
  const [lo, hi] = range();
  const mm: VoiWindow = { center: (lo + hi + 1) / 2, width: hi - lo + 1, fn: VoiLutFunction.Linear };
  return hi > lo ? (x) => applyVoiWindow(x, mm) : () => 0;
}

function renderMonochrome(d: NaturalDataset, frame: DecodedFrame, frameIndex: number): Uint8Array {
  const n = frame.rows * frame.columns;
  const mod = modalityTransform(d, frameIndex);
  // Presentation LUT Shape (2050,0020) INVERSE, or MONOCHROME1 (minimum value = white,
  // PS3.3 C.7.6.3.1.2): invert so that the output is always "brighter = denser" like MONOCHROME2.
  const shape = String(first(d.PresentationLUTShape) ?? '').trim();
  const invert = frame.photometricInterpretation === 'MONOCHROME1' || shape === 'INVERSE';
  const data = frame.data;
  const out = new Uint8Array(n);

  if (!(data instanceof Float32Array)) {
    // Integer samples: the whole chain (Modality LUT → VOI → inversion → 8 bits) is a function of the
    // stored value alone, so evaluate it once per distinct value present and map pixels through a
    // table. Same arithmetic as the per-pixel path, a small fraction of the work on large frames.
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const v = data[i] as number;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const range = n === 0 ? 0 : max - min + 1;
    if (range > 0 && range <= MAX_LUT_RANGE) {
      const modv = new Float64Array(range);
      for (let k = 0; k < range; k++) modv[k] = mod(min + k);
      const voi = voiFunction(d, frameIndex, () => {
        const present = new Uint8Array(range);
        for (let i = 0; i < n; i++) present[(data[i] as number) - min] = 1;
        let lo = Number.POSITIVE_INFINITY;
        let hi = Number.NEGATIVE_INFINITY;
        for (let k = 0; k < range; k++) {
          if (present[k] === 0) continue;
          const v = modv[k] as number;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        return [lo, hi];
      });
      const lut = new Uint8Array(range);
      for (let k = 0; k < range; k++) {
        const y = clampRound(voi(modv[k] as number));
        lut[k] = invert ? 255 - y : y;
      }
      for (let i = 0; i < n; i++) out[i] = lut[(data[i] as number) - min] as number;
      return out;
    }
  }

  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = mod(data[i] ?? 0);
  const voi = voiFunction(d, frameIndex, () => {
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  });
  for (let i = 0; i < n; i++) {
    const y = clampRound(voi(values[i] ?? 0));
    out[i] = invert ? 255 - y : y;
  }
  return out;
}

/** Scale samples of `bitsStored` bits to 0..255. */
function to8bit(data: PixelArray, bitsStored: number): Uint8Array {
  if (data instanceof Uint8Array) return data;
  const max = 2 ** Math.min(bitsStored, 32) - 1;
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = clampRound(((data[i] ?? 0) / max) * 255);
  return out;
}

/**
 * PALETTE COLOR (PS3.3 C.7.6.3.1.5, C.7.9): three LUTs, one per channel, to 8-bit RGB. Each LUT is
 * either plain (0028,1201–1203) or segmented (0028,1221–1223, C.7.9.2), expanded to the size its
 * descriptor gives.
 */
function renderPalette(d: NaturalDataset, frame: DecodedFrame): Uint8Array {
  const chans = ['Red', 'Green', 'Blue'].map((c) => {
    const what = `${c} Palette Color LUT`;
    const segmented = d[`Segmented${c}PaletteColorLookupTableData`];
    if (segmented !== undefined && segmented !== null && d[`${c}PaletteColorLookupTableData`] === undefined) {
      const plain = readLut(d[`${c}PaletteColorLookupTableDescriptor`], new Uint8Array(0), what);
      const bytes = toBytes(segmented);
      if (bytes === undefined)
        throw new DicomError(ErrorCode.DicomInvalid, `${what}: segmented LUT Data is not binary`);
      const words = new Uint16Array(bytes.byteLength >> 1);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < words.length; i++) words[i] = dv.getUint16(i * 2, true);
      return { ...plain, entries: expandSegmentedLut(words, plain.entries.length, what) };
    }
    return readLut(d[`${c}PaletteColorLookupTableDescriptor`], d[`${c}PaletteColorLookupTableData`], what);
  });
  const n = frame.rows * frame.columns;
  const out = new Uint8Array(n * 3);
  for (let c = 0; c < 3; c++) {
    const lut = chans[c];
    if (lut === undefined) continue;
    // Entries are 8 or 16 bits (C.7.6.3.1.5); take the most significant 8.
    const shift = lut.bits > 8 ? lut.bits - 8 : 0;
    for (let i = 0; i < n; i++) out[i * 3 + c] = lutLookup(lut, frame.data[i] ?? 0) >> shift;
  }
  return out;
}

/** Render frame `frameIndex` of `dataset` (decoded by decodeFrame) to an 8-bit image. */
export function renderFrame(dataset: NaturalDataset, frame: DecodedFrame, frameIndex: number): RenderedImage {
  const { rows: height, columns: width } = frame;
  const pi = frame.photometricInterpretation;
  if (frame.samplesPerPixel === 1) {
    if (pi === 'MONOCHROME1' || pi === 'MONOCHROME2') {
      return { width, height, channels: 1, data: renderMonochrome(dataset, frame, frameIndex) };
    }
    if (pi === 'PALETTE COLOR') return { width, height, channels: 3, data: renderPalette(dataset, frame) };
    throw new DicomError(ErrorCode.DicomUnsupported, `Photometric Interpretation ${pi} with 1 sample is not supported`);
  }
  if (frame.samplesPerPixel === 3) {
    if (pi === 'RGB') return { width, height, channels: 3, data: to8bit(frame.data, frame.bitsStored) };
    if (pi === 'YBR_FULL' && frame.data instanceof Uint8Array) {
      return { width, height, channels: 3, data: ybrFullToRgb(frame.data) };
    }
  }
  throw new DicomError(
    ErrorCode.DicomUnsupported,
    `Photometric Interpretation ${pi} with ${frame.samplesPerPixel} samples is not supported for rendering`,
  );
}
