import path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import dcmjsCodecs from 'dcmjs-codecs';
import jpegLossless from 'jpeg-lossless-decoder-js';
import { DicomError, ErrorCode, normalizeErrorString } from '../errors.js';
import { silenceDcmjsLogs } from './dataset.js';
import type { PixelModule } from './frames.js';
import { TransferSyntax } from './uids.js';

/**
 * Decoders for encapsulated transfer syntaxes (PS3.5 Annex A.4, A.8; Table A-1), one frame at a time.
 * dcmjs-codecs' WebAssembly codecs are bit-exact against DCMTK/GDCM for the syntaxes listed here
 * (reference/js-stack.md §4); jpeg-lossless-decoder-js is the fallback for process 14.
 */

/** The Transfer Syntaxes (PS3.6 Table A-1, in `uids.ts`) this module can decode, grouped by codec. */
export const CompressedSyntax = {
  RleLossless: TransferSyntax.RleLossless,
  JpegBaseline: TransferSyntax.JpegBaseline,
  JpegExtended: TransferSyntax.JpegExtended,
  /**
   * Retired progressive DCT processes (ITU T.81 Annex G, SOF2). libjpeg in dcmjs-codecs decodes them
   * at 8 and 12 bits like DCMTK's dcmdjpeg; tested against dcmdjpeg (test/fixtures/legacy).
   */
  JpegSpectralSelection: TransferSyntax.JpegSpectralSelectionNonHierarchical,
  JpegFullProgression: TransferSyntax.JpegFullProgressionNonHierarchical,
  JpegLossless: TransferSyntax.JpegLossless,
  JpegLosslessSv1: TransferSyntax.JpegLosslessSv1,
  JpegLsLossless: TransferSyntax.JpegLsLossless,
  JpegLsNearLossless: TransferSyntax.JpegLsNearLossless,
  Jpeg2000Lossless: TransferSyntax.Jpeg2000Lossless,
  Jpeg2000: TransferSyntax.Jpeg2000,
  HtJpeg2000Lossless: TransferSyntax.HtJpeg2000Lossless,
  HtJpeg2000LosslessRpcl: TransferSyntax.HtJpeg2000LosslessRpcl,
  HtJpeg2000: TransferSyntax.HtJpeg2000,
  /** Deflated Image Frame Compression (PS3.5 §8.2.16): each frame is raw deflate of native bytes. */
  DeflatedImageFrame: TransferSyntax.DeflatedImageFrame,
} as const satisfies Readonly<Record<string, TransferSyntax>>;
export type CompressedSyntax = (typeof CompressedSyntax)[keyof typeof CompressedSyntax];

const SUPPORTED: ReadonlySet<string> = new Set(Object.values(CompressedSyntax));

export function isSupportedCompressedSyntax(ts: string): ts is CompressedSyntax {
  return SUPPORTED.has(ts);
}

/** A decoded, still-raw frame: little-endian samples of BitsAllocated bits, unmasked. */
export interface CodecOutput {
  readonly bytes: Uint8Array;
  readonly photometricInterpretation: string;
  readonly planarConfiguration: 0 | 1;
}

interface CodecContext {
  getDecodedBuffer(): Uint8Array | undefined;
  getPhotometricInterpretation(): string | undefined;
  getPlanarConfiguration(): number | undefined;
}

interface NativeCodecsApi {
  initializeAsync(opts?: { logCodecsInfo?: boolean; logCodecsTrace?: boolean }): Promise<void>;
  decodeRle(ctx: unknown, p?: unknown): CodecContext;
  decodeJpeg(ctx: unknown, p?: { convertColorspaceToRgb?: boolean }): CodecContext;
  decodeJpegLs(ctx: unknown, p?: unknown): CodecContext;
  decodeJpeg2000(ctx: unknown, p?: unknown): CodecContext;
  decodeHtJpeg2000(ctx: unknown, p?: unknown): CodecContext;
}

const codecsLib = dcmjsCodecs as {
  NativeCodecs: NativeCodecsApi;
  Context: new (attrs: Record<string, unknown>) => unknown;
  log?: { setLevel(l: string): void };
};

/**
 * dcmjs-codecs and its Emscripten runtime print to stdout (js-stack.md §4). Codec calls are
 * synchronous, so swapping stdout/console for their duration cannot hide anyone else's output.
 */
function quietly<T>(fn: () => T): T {
  const write = process.stdout.write;
  const { log, info, warn, debug } = console;
  const noop = (): boolean => true;
  process.stdout.write = noop as unknown as typeof process.stdout.write;
  console.log = console.info = console.warn = console.debug = noop;
  try {
    return fn();
  } finally {
    process.stdout.write = write;
    Object.assign(console, { log, info, warn, debug });
  }
}

let ready: Promise<NativeCodecsApi> | undefined;

/** Load the WebAssembly codecs once per process (or worker). */
export function nativeCodecs(): Promise<NativeCodecsApi> {
  if (ready === undefined) {
    codecsLib.log?.setLevel('silent');
    // dcmjs-codecs bundles its own dcmjs (0.50.x) whose loggers are separate from ours.
    try {
      silenceDcmjsLogs(require(require.resolve('dcmjs', { paths: [path.dirname(require.resolve('dcmjs-codecs'))] })));
    } catch {
      // No nested copy: the top-level dcmjs is already silenced in dataset.ts.
    }
    ready = codecsLib.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false }).then(
      () => codecsLib.NativeCodecs,
    );
    ready.catch(() => {
      ready = undefined;
    });
  }
  return ready;
}

function expectedFrameBytes(pm: PixelModule): number {
  return (pm.rows * pm.columns * pm.samplesPerPixel * pm.bitsAllocated) / 8;
}

/** Process 14 fallback (ITU T.81 H.1) with jpeg-lossless-decoder-js; grey or 3-component. */
function decodeJpegLosslessJs(bytes: Uint8Array, pm: PixelModule): Uint8Array {
  const numBytes = pm.bitsAllocated <= 8 ? 1 : 2;
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const decoder = new jpegLossless.Decoder();
  const out = decoder.decode(buf, 0, bytes.byteLength, numBytes) as Uint8Array | Uint16Array;
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * JPEG-LS with interleave mode 0 (ITU T.87 §C.2.3: one component per scan) comes out of CharLS plane
 * by plane whatever Planar Configuration says (PS3.5 §8.2.3 leaves the choice to the codestream).
 * Read Ns of the first SOS (FFDA): 1 means one scan per component.
 */
function jpegLsPlaneByPlane(bytes: Uint8Array): boolean {
  for (let i = 0; i + 4 < bytes.byteLength; i++) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xda) return bytes[i + 4] === 1;
  }
  return false;
}

/**
 * Decode one encapsulated frame. Colour JPEG (YBR_FULL/YBR_FULL_422) comes back as RGB, as DCMTK's
 * dcmdjpeg does; JPEG 2000 YBR_RCT/YBR_ICT come back as RGB because the codestream's multiple
 * component transform is reversed by the decoder (PS3.5 §8.2.4, A.4.4).
 */
export async function decodeCompressedFrame(ts: string, bytes: Uint8Array, pm: PixelModule): Promise<CodecOutput> {
  if (!isSupportedCompressedSyntax(ts)) {
    throw new DicomError(ErrorCode.DicomUnsupported, `transfer syntax ${ts} is not supported by the pixel decoder`);
  }
  const expected = expectedFrameBytes(pm);
  if (ts === CompressedSyntax.DeflatedImageFrame) {
    let inflated: Uint8Array;
    try {
      inflated = new Uint8Array(inflateRawSync(bytes));
    } catch (err) {
      throw new DicomError(ErrorCode.DicomInvalid, `Deflated Image Frame: ${normalizeErrorString(err)}`, {
        cause: err,
      });
    }
    return {
      bytes: inflated,
      photometricInterpretation: pm.photometricInterpretation,
      planarConfiguration: pm.planarConfiguration,
    };
  }
  const codecs = await nativeCodecs();
  const ctx = new codecsLib.Context({
    width: pm.columns,
    height: pm.rows,
    bitsAllocated: pm.bitsAllocated,
    bitsStored: pm.bitsStored,
    samplesPerPixel: pm.samplesPerPixel,
    pixelRepresentation: pm.pixelRepresentation,
    planarConfiguration: pm.planarConfiguration,
    photometricInterpretation: pm.photometricInterpretation,
    encodedBuffer: bytes,
  });
  let out: CodecContext;
  try {
    out = quietly(() => {
      switch (ts) {
        case CompressedSyntax.RleLossless:
          return codecs.decodeRle(ctx);
        case CompressedSyntax.JpegBaseline:
        case CompressedSyntax.JpegExtended:
        case CompressedSyntax.JpegSpectralSelection:
        case CompressedSyntax.JpegFullProgression:
        case CompressedSyntax.JpegLossless:
        case CompressedSyntax.JpegLosslessSv1:
          // DCMTK honours Photometric Interpretation RGB even without an Adobe marker (no colour
          // transform); libjpeg would otherwise assume YCbCr for 3 components (PS3.5 §8.2.1).
          return codecs.decodeJpeg(ctx, { convertColorspaceToRgb: pm.photometricInterpretation !== 'RGB' });
        case CompressedSyntax.JpegLsLossless:
        case CompressedSyntax.JpegLsNearLossless:
          return codecs.decodeJpegLs(ctx);
        case CompressedSyntax.Jpeg2000Lossless:
        case CompressedSyntax.Jpeg2000:
          return codecs.decodeJpeg2000(ctx);
        default:
          return codecs.decodeHtJpeg2000(ctx);
      }
    });
  } catch (err) {
    if (ts === CompressedSyntax.JpegLossless || ts === CompressedSyntax.JpegLosslessSv1) {
      try {
        const decoded = decodeJpegLosslessJs(bytes, pm);
        if (decoded.byteLength >= expected) {
          return { bytes: decoded, photometricInterpretation: pm.photometricInterpretation, planarConfiguration: 0 };
        }
      } catch {
        // fall through to the codec's own error, which is the more informative one
      }
    }
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `cannot decode frame (transfer syntax ${ts}): ${normalizeErrorString(err)}`,
      {
        cause: err,
      },
    );
  }
  const decoded = out.getDecodedBuffer();
  if (decoded === undefined || decoded.byteLength < expected) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `decoded frame is ${decoded?.byteLength ?? 0} bytes, ${expected} expected (transfer syntax ${ts})`,
    );
  }
  let pi = out.getPhotometricInterpretation() ?? pm.photometricInterpretation;
  if (pi === 'YBR_RCT' || pi === 'YBR_ICT') pi = 'RGB';
  const jpegLs = ts === CompressedSyntax.JpegLsLossless || ts === CompressedSyntax.JpegLsNearLossless;
  return {
    bytes: decoded,
    photometricInterpretation: pi,
    planarConfiguration:
      out.getPlanarConfiguration() === 1 || (jpegLs && pm.samplesPerPixel > 1 && jpegLsPlaneByPlane(bytes)) ? 1 : 0,
  };
}
