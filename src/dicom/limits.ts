import { Readable } from 'node:stream';
import { createInflateRaw } from 'node:zlib';
import { DicomError, ErrorCode } from '../errors.js';

/**
 * Resource limits on untrusted DICOM content (issue 9, "hostile input"), in one place. Every path
 * that reads a received instance applies them: the STOW-RS and WADO-RS receipt (the instance store's
 * header read, src/ingest/received-header.ts) and the image-prep worker before it decodes
 * (src/pipeline/image-prep-worker.ts). The standard sets none of these bounds — PS3.5 allows a
 * sequence nested to any depth and a value of up to 2³²−2 bytes — so a receiver picks its own and
 * refuses what is beyond them; the defaults sit far above anything a modality produces.
 */
export interface DicomLimits {
  /**
   * Most bytes a Deflated Explicit VR Little Endian data set (PS3.5 A.5) may inflate to, Pixel Data
   * included. A deflate bomb inflates a few megabytes to gigabytes.
   */
  readonly maxInflatedBytes: number;
  /**
   * Most inflated bytes per deflated byte, applied once the output exceeds
   * `inflationRatioFloorBytes`: deflate reaches about 1032:1 on runs of one byte, so an all-black
   * image legitimately compresses far; a small output is never refused for its ratio.
   */
  readonly maxInflationRatio: number;
  readonly inflationRatioFloorBytes: number;
  /** Deepest nesting of sequences (SQ, PS3.5 §7.5); each item of a sequence is one level. */
  readonly maxSequenceDepth: number;
  /** Most data elements in the header (before Pixel Data), nested ones included. */
  readonly maxElements: number;
  /** Most bytes one decoded frame may take (Rows × Columns × Samples per Pixel × Bits Allocated / 8). */
  readonly maxDecodedFrameBytes: number;
  /** Most bytes all decoded frames of an instance may take (frame bytes × Number of Frames). */
  readonly maxDecodedInstanceBytes: number;
}

export const DEFAULT_DICOM_LIMITS: DicomLimits = {
  maxInflatedBytes: 1024 * 1024 * 1024,
  maxInflationRatio: 200,
  inflationRatioFloorBytes: 64 * 1024 * 1024,
  maxSequenceDepth: 64,
  maxElements: 250_000,
  // A 16384 × 16384 RGB frame at 16 bits (a whole-slide tile is far smaller) is 1.5 GiB; 1 GiB keeps
  // one decode inside the image-prep worker's default memory.
  maxDecodedFrameBytes: 1024 * 1024 * 1024,
  // The STOW-RS default part size (ingest.maxPartBytes, 4 GiB) of native pixels.
  maxDecodedInstanceBytes: 4 * 1024 * 1024 * 1024,
};

/**
 * Which limit an input broke. Closed set. `resource` says how the refusal is reported: a bound of
 * ours (the input may be conformant, we will not spend the resources) or a contradiction in the
 * input itself (it cannot be what it claims).
 */
export const LimitViolation = {
  /** The deflated data set inflates past `maxInflatedBytes`. */
  InflatedTooLarge: 'inflated-too-large',
  /** The deflated data set inflates more than `maxInflationRatio` to one. */
  InflationRatio: 'inflation-ratio',
  /** Sequences nest deeper than `maxSequenceDepth`. */
  SequenceTooDeep: 'sequence-too-deep',
  /** More than `maxElements` data elements before Pixel Data. */
  TooManyElements: 'too-many-elements',
  /** A value length declares more bytes than the input holds (PS3.5 §7.1.1). */
  ElementLengthExceedsData: 'element-length-exceeds-data',
  /** Rows × Columns × Samples per Pixel × Bits Allocated × Number of Frames exceeds the native Pixel Data present. */
  FrameExceedsData: 'frame-exceeds-data',
  /** One decoded frame would exceed `maxDecodedFrameBytes`. */
  DecodedFrameTooLarge: 'decoded-frame-too-large',
  /** All decoded frames together would exceed `maxDecodedInstanceBytes`. */
  DecodedInstanceTooLarge: 'decoded-instance-too-large',
} as const;
export type LimitViolation = (typeof LimitViolation)[keyof typeof LimitViolation];

/** Violations that are our bounds (refused for resources), not contradictions in the input. */
export const RESOURCE_VIOLATIONS: ReadonlySet<LimitViolation> = new Set<LimitViolation>([
  LimitViolation.InflatedTooLarge,
  LimitViolation.InflationRatio,
  LimitViolation.SequenceTooDeep,
  LimitViolation.TooManyElements,
  LimitViolation.DecodedFrameTooLarge,
  LimitViolation.DecodedInstanceTooLarge,
]);

/** Input that broke a DICOM limit: code `dicom-hostile`, permanent (retrying reads the same bytes). */
export class DicomLimitError extends DicomError {
  override name = 'DicomLimitError';
  readonly violation: LimitViolation;
  /** True for a bound of ours (STOW Failure Reason 0xA700), false for a self-contradiction (0xC000). */
  readonly resource: boolean;
  constructor(violation: LimitViolation, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DicomHostile, `DICOM limit: ${message}`, options);
    this.violation = violation;
    this.resource = RESOURCE_VIOLATIONS.has(violation);
  }
}

export function isDicomLimitError(err: unknown, violation?: LimitViolation): err is DicomLimitError {
  return err instanceof DicomLimitError && (violation === undefined || err.violation === violation);
}

/** Limits with `over` applied; only keys present in `over` change. */
export function dicomLimits(over: Partial<DicomLimits> = {}): DicomLimits {
  return { ...DEFAULT_DICOM_LIMITS, ...over };
}

/** Check the inflate output so far against the byte and ratio bounds. */
export function checkInflation(outBytes: number, inBytes: number, limits: DicomLimits): void {
  if (outBytes > limits.maxInflatedBytes) {
    throw new DicomLimitError(
      LimitViolation.InflatedTooLarge,
      `deflated data set inflates past ${limits.maxInflatedBytes} bytes`,
    );
  }
  if (outBytes > limits.inflationRatioFloorBytes && outBytes > limits.maxInflationRatio * Math.max(1, inBytes)) {
    throw new DicomLimitError(
      LimitViolation.InflationRatio,
      `deflated data set inflates more than ${limits.maxInflationRatio}:1 (${outBytes} bytes from ${inBytes})`,
    );
  }
}

/**
 * Inflate a raw deflate stream (PS3.5 A.5) only to count its output, keeping none of it, and stop as
 * soon as a bound is broken: memory is one zlib window and one chunk, whatever the stream claims.
 * Resolves with the inflated byte count; a stream that ends mid-way rejects with the zlib error
 * (`Z_BUF_ERROR`), one that is not deflate with its error.
 */
export async function measureInflated(source: AsyncIterable<Uint8Array>, limits: DicomLimits): Promise<number> {
  let inBytes = 0;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const c of source) {
      inBytes += c.byteLength;
      yield c;
    }
  }
  const inflater = createInflateRaw();
  const input = Readable.from(counted(), { objectMode: false });
  input.on('error', (err) => inflater.destroy(err));
  input.pipe(inflater);
  let outBytes = 0;
  try {
    for await (const chunk of inflater as AsyncIterable<Buffer>) {
      outBytes += chunk.byteLength;
      checkInflation(outBytes, inBytes, limits);
    }
  } finally {
    input.destroy();
    inflater.destroy();
  }
  return outBytes;
}

/** The Image Pixel Module values that size a frame (PS3.3 C.7.6.3). */
export interface FrameGeometry {
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly bitsAllocated: number;
  readonly numberOfFrames: number;
  /** Photometric Interpretation (0028,0004): native YBR_*_422 holds 2 samples per pixel, not 3. */
  readonly photometricInterpretation?: string | null;
}

/** Bytes of one decoded frame, rounded up to whole bytes (1-bit frames are packed, PS3.5 §8.1.1). */
export function decodedFrameBytes(g: FrameGeometry): number {
  return Math.ceil((g.rows * g.columns * g.samplesPerPixel * g.bitsAllocated) / 8);
}

/** Native samples per pixel: YBR_FULL_422 / YBR_PARTIAL_422 store two per pixel (PS3.3 C.7.6.3.1.2). */
function nativeSamples(g: FrameGeometry): number {
  const pi = g.photometricInterpretation?.trim();
  return g.samplesPerPixel === 3 && (pi === 'YBR_FULL_422' || pi === 'YBR_PARTIAL_422') ? 2 : g.samplesPerPixel;
}

/**
 * Check the decoded size of one frame and of all frames against the bounds, and, for native Pixel
 * Data (`nativeBytes` = its value length), that the frames fit the bytes present (PS3.5 §8.1.1:
 * native frames are contiguous, so Number of Frames frames need frames × frame bits). Encapsulated
 * pixel data has no such relation (PS3.5 A.4); only the decoded bounds apply.
 */
export function checkFrameGeometry(g: FrameGeometry, limits: DicomLimits, nativeBytes?: number): void {
  const frame = decodedFrameBytes(g);
  if (frame > limits.maxDecodedFrameBytes) {
    throw new DicomLimitError(
      LimitViolation.DecodedFrameTooLarge,
      `a ${g.rows} × ${g.columns} × ${g.samplesPerPixel} × ${g.bitsAllocated}-bit frame decodes to ${frame} bytes, over ${limits.maxDecodedFrameBytes}`,
    );
  }
  const total = frame * g.numberOfFrames;
  if (total > limits.maxDecodedInstanceBytes) {
    throw new DicomLimitError(
      LimitViolation.DecodedInstanceTooLarge,
      `${g.numberOfFrames} frames decode to ${total} bytes, over ${limits.maxDecodedInstanceBytes}`,
    );
  }
  if (nativeBytes !== undefined) {
    const needed = Math.ceil((g.rows * g.columns * nativeSamples(g) * g.bitsAllocated * g.numberOfFrames) / 8);
    if (needed > nativeBytes) {
      throw new DicomLimitError(
        LimitViolation.FrameExceedsData,
        `${g.numberOfFrames} frame(s) of ${g.rows} × ${g.columns} × ${g.samplesPerPixel} × ${g.bitsAllocated} bits need ${needed} bytes, Pixel Data holds ${nativeBytes}`,
      );
    }
  }
}
