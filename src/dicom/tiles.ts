import { ErrorCode, ModelError } from '../errors.js';
import { resizeBilinearPil } from './pil-resize.js';
import type { RenderedImage } from './render.js';

export { resizeBilinearPil } from './pil-resize.js';

/**
 * Mllama image preprocessing (reference/model-contract.md §1, mirroring transformers
 * `image_processing_mllama.py`): fit the image to the best tiled canvas, PIL bilinear resize,
 * pad in uint8, rescale + normalise, split into row-major tiles.
 */

/** PIL resample filter ids as stored in preprocessor_config.json (`resample`). 2 = BILINEAR. */
export const PIL_BILINEAR = 2;

/** The parts of a Hugging Face `preprocessor_config.json` that preprocessing reads (§1.1). */
export interface MllamaPreprocessorConfig {
  readonly size: { readonly height: number; readonly width: number };
  readonly maxImageTiles: number;
  readonly imageMean: readonly [number, number, number];
  readonly imageStd: readonly [number, number, number];
  readonly rescaleFactor: number;
  readonly resample: number;
  readonly doResize: boolean;
  readonly doPad: boolean;
  readonly doRescale: boolean;
  readonly doNormalize: boolean;
  readonly doConvertRgb: boolean;
}

/** Model input for one image (batch 1, one image per sample), §1.2. */
export interface MllamaVisionInput {
  /** float32 [1, 1, maxTiles, 3, T, T]; tiles t >= n are exactly 0.0. */
  readonly pixelValues: Float32Array;
  readonly dims: number[];
  /** 1-based index into supported aspect ratios; 0 means "padded image slot". */
  readonly aspectRatioId: number;
  /** Length maxTiles: 1 for used tiles, 0 for the rest. */
  readonly aspectRatioMask: number[];
  /** [height, width] of the tiled canvas in pixels. */
  readonly canvas: [number, number];
  /** [tiles in height, tiles in width]. */
  readonly tiles: [number, number];
  /** [height, width] after resize, before padding. */
  readonly resized: [number, number];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validate a parsed preprocessor_config.json. Collects every problem and throws one
 * ModelError(model-invalid) listing them (STYLE §2.5).
 */
export function parseMllamaPreprocessorConfig(json: unknown): MllamaPreprocessorConfig {
  const problems: string[] = [];
  if (!isObject(json)) throw new ModelError(ErrorCode.ModelInvalid, 'preprocessor_config.json: not a JSON object');
  const posInt = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      problems.push(`${key}: must be a positive integer`);
      return 1;
    }
    return v;
  };
  const bool = (key: string): boolean => {
    const v = json[key];
    if (typeof v !== 'boolean') {
      problems.push(`${key}: must be a boolean`);
      return false;
    }
    return v;
  };
  const triple = (key: string, positive: boolean): [number, number, number] => {
    const v = json[key];
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      problems.push(`${key}: must be an array of 3 finite numbers`);
      return [0, 0, 1];
    }
    if (positive && !v.every((x) => (x as number) > 0)) problems.push(`${key}: values must be > 0`);
    return [v[0] as number, v[1] as number, v[2] as number];
  };
  let height = 1;
  let width = 1;
  const size = json.size;
  if (!isObject(size)) problems.push('size: must be an object {height, width}');
  else {
    height = posInt('size.height', size.height);
    width = posInt('size.width', size.width);
    if (height !== width) problems.push('size: Mllama tiles are square (height must equal width)');
  }
  const maxImageTiles = posInt('max_image_tiles', json.max_image_tiles);
  const imageMean = triple('image_mean', false);
  const imageStd = triple('image_std', true);
  const rf = json.rescale_factor;
  if (typeof rf !== 'number' || !Number.isFinite(rf) || rf <= 0) problems.push('rescale_factor: must be a number > 0');
  const resample = json.resample;
  if (resample !== PIL_BILINEAR) problems.push(`resample: only ${PIL_BILINEAR} (PIL BILINEAR) is implemented`);
  const doResize = bool('do_resize');
  const doPad = bool('do_pad');
  const doRescale = bool('do_rescale');
  const doNormalize = bool('do_normalize');
  const doConvertRgb = bool('do_convert_rgb');
  // transformers' MllamaImageProcessor raises when these are false (model-contract.md §1.1).
  if (json.do_resize === false) problems.push('do_resize: must be true for Mllama');
  if (json.do_pad === false) problems.push('do_pad: must be true for Mllama');
  if (problems.length > 0) {
    throw new ModelError(ErrorCode.ModelInvalid, `invalid preprocessor_config.json:\n  ${problems.join('\n  ')}`);
  }
  return {
    size: { height, width },
    maxImageTiles,
    imageMean,
    imageStd,
    rescaleFactor: rf as number,
    resample: PIL_BILINEAR,
    doResize,
    doPad,
    doRescale,
    doNormalize,
    doConvertRgb,
  };
}

/** Supported aspect ratios [tilesH, tilesW] with a*b <= maxTiles, in transformers' order (ids = index + 1). */
export function getAllSupportedAspectRatios(maxImageTiles: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let a = 1; a <= maxImageTiles; a++) {
    for (let b = 1; b <= maxImageTiles; b++) if (a * b <= maxImageTiles) out.push([a, b]);
  }
  return out;
}

/**
 * transformers `get_optimal_tiled_canvas`: the canvas [h, w] needing the least upscaling, or if
 * every canvas needs downscaling the one needing the least; ties broken by smallest area, then order.
 */
export function getOptimalTiledCanvas(
  imageHeight: number,
  imageWidth: number,
  maxImageTiles: number,
  tileSize: number,
): [number, number] {
  const cands = getAllSupportedAspectRatios(maxImageTiles).map(([a, b]) => [a * tileSize, b * tileSize] as const);
  const scales = cands.map(([ch, cw]) => Math.min(ch / imageHeight, cw / imageWidth));
  const up = scales.filter((s) => s >= 1);
  const sel = up.length > 0 ? Math.min(...up) : Math.max(...scales);
  let best: readonly [number, number] | undefined;
  for (let i = 0; i < cands.length; i++) {
    const c = cands[i];
    if (c === undefined || scales[i] !== sel) continue;
    if (best === undefined || c[0] * c[1] < best[0] * best[1]) best = c;
  }
  if (best === undefined) throw new RangeError('getOptimalTiledCanvas: no candidate canvas');
  return [best[0], best[1]];
}

/**
 * transformers `get_image_size_fit_to_canvas`: the [h, w] the image is resized to, keeping the
 * aspect ratio, never larger than the canvas, and brought up to at least one tile per side.
 */
export function getImageSizeFitToCanvas(
  imageHeight: number,
  imageWidth: number,
  canvasHeight: number,
  canvasWidth: number,
  tileSize: number,
): [number, number] {
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  const targetW = clamp(imageWidth, tileSize, canvasWidth);
  const targetH = clamp(imageHeight, tileSize, canvasHeight);
  const scaleH = targetH / imageHeight;
  const scaleW = targetW / imageWidth;
  if (scaleW < scaleH) return [Math.min(Math.floor(imageHeight * scaleW), targetH), targetW];
  return [targetH, Math.min(Math.floor(imageWidth * scaleH), targetW)];
}

/** Build pixel_values, aspect_ratio_ids and aspect_ratio_mask for one rendered image (§1.2). */
export function buildMllamaInput(image: RenderedImage, cfg: MllamaPreprocessorConfig): MllamaVisionInput {
  const { width: W, height: H, channels } = image;
  if (channels !== 1 && channels !== 3)
    throw new RangeError(`buildMllamaInput: channels must be 1 or 3, got ${channels}`);
  if (image.data.length < W * H * channels) throw new RangeError('buildMllamaInput: image buffer too small');
  const T = cfg.size.height;
  const maxT = cfg.maxImageTiles;
  const [canvasH, canvasW] = getOptimalTiledCanvas(H, W, maxT, T);
  const nth = canvasH / T;
  const ntw = canvasW / T;
  const n = nth * ntw;
  const [newH, newW] = getImageSizeFitToCanvas(H, W, canvasH, canvasW, T);

  // Grey → RGB by replicating the channel (§1.1); done after the resize, which is per-channel anyway.
  const resized = resizeBilinearPil(image.data, W, H, channels, newW, newH);

  // Padding is value 0 in uint8 space (pad before normalise).
  const lut = normalizationLut(cfg);

  const plane = T * T;
  const pixelValues = new Float32Array(maxT * 3 * plane); // unused tiles stay exactly 0.0
  for (let r = 0; r < nth; r++) {
    for (let tc = 0; tc < ntw; tc++) {
      const tileBase = (r * ntw + tc) * 3 * plane;
      for (let y = 0; y < T; y++) {
        const cy = r * T + y;
        for (let x = 0; x < T; x++) {
          const cx = tc * T + x;
          const inside = cy < newH && cx < newW;
          const si = (cy * newW + cx) * channels;
          for (let c = 0; c < 3; c++) {
            const v = inside ? (resized[si + (channels === 1 ? 0 : c)] ?? 0) : 0;
            pixelValues[tileBase + c * plane + y * T + x] = lut[c]?.[v] ?? 0;
          }
        }
      }
    }
  }
  const ratios = getAllSupportedAspectRatios(maxT);
  const aspectRatioId = ratios.findIndex(([a, b]) => a === nth && b === ntw) + 1;
  const aspectRatioMask = Array.from({ length: maxT }, (_, i) => (i < n ? 1 : 0));
  return {
    pixelValues,
    dims: [1, 1, maxT, 3, T, T],
    aspectRatioId,
    aspectRatioMask,
    canvas: [canvasH, canvasW],
    tiles: [nth, ntw],
    resized: [newH, newW],
  };
}

/**
 * Per-channel lookup of the normalised value of each uint8 level, in float32 as transformers computes
 * it: `rescale` is a float64 product cast to float32, then `normalize` runs in float32.
 */
export function normalizationLut(cfg: {
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  readonly doNormalize: boolean;
  readonly imageMean: readonly number[];
  readonly imageStd: readonly number[];
}): Float32Array[] {
  return [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      let x = Math.fround(v);
      if (cfg.doRescale) x = Math.fround(v * cfg.rescaleFactor);
      if (cfg.doNormalize) {
        x = Math.fround(Math.fround(x - Math.fround(cfg.imageMean[c] ?? 0)) / Math.fround(cfg.imageStd[c] ?? 1));
      }
      t[v] = x;
    }
    return t;
  });
}
