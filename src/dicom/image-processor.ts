import { ErrorCode, ModelError } from '../errors.js';
import { isPilFilter, PilFilter, resizeBilinearPil } from './pil-resize.js';
import type { RenderedImage } from './render.js';
import { buildMllamaInput, type MllamaVisionInput, normalizationLut, parseMllamaPreprocessorConfig } from './tiles.js';

/**
 * Model-family dispatch for image preprocessing, read from the bundle's preprocessor_config.json
 * `image_processor_type` (never from the model name): Mllama's tiler (tiles.ts,
 * reference/model-contract.md §1) or a plain resize → (crop | pad) → rescale → normalise path, as
 * Hugging Face `SiglipImageProcessor`, `Gemma3ImageProcessor` (MedGemma), `CLIPImageProcessor`,
 * `LlavaImageProcessor` and `Idefics3ImageProcessor` (SmolVLM, global image only) do it.
 */

export const ImageProcessorFamily = {
  /** Llama-3.2-Vision: aspect-ratio tiles (tiles.ts). */
  Mllama: 'mllama',
  /** One fixed-size image: resize, optional centre crop or pad to square, rescale, normalise. */
  Plain: 'plain',
} as const;
export type ImageProcessorFamily = (typeof ImageProcessorFamily)[keyof typeof ImageProcessorFamily];

/** `image_processor_type` values (with and without the `Fast` suffix) → family. */
const PROCESSOR_TYPES: Readonly<Record<string, ImageProcessorFamily>> = {
  MllamaImageProcessor: ImageProcessorFamily.Mllama,
  SiglipImageProcessor: ImageProcessorFamily.Plain,
  Siglip2ImageProcessor: ImageProcessorFamily.Plain,
  Gemma3ImageProcessor: ImageProcessorFamily.Plain,
  CLIPImageProcessor: ImageProcessorFamily.Plain,
  LlavaImageProcessor: ImageProcessorFamily.Plain,
  Idefics3ImageProcessor: ImageProcessorFamily.Plain,
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function imageProcessorFamily(json: unknown): ImageProcessorFamily {
  if (!isObject(json)) throw new ModelError(ErrorCode.ModelInvalid, 'preprocessor_config.json: not a JSON object');
  const type = String(json.image_processor_type ?? '').replace(/Fast$/, '');
  const family = PROCESSOR_TYPES[type];
  if (family === undefined) {
    throw new ModelError(
      ErrorCode.ModelInvalid,
      `preprocessor_config.json: image_processor_type "${type}" is not supported (known: ${Object.keys(PROCESSOR_TYPES).join(', ')})`,
    );
  }
  return family;
}

/** How the plain path sizes the image (transformers `size` dict forms). */
export type PlainResize =
  | { readonly mode: 'fixed'; readonly height: number; readonly width: number }
  | { readonly mode: 'shortest-edge'; readonly shortestEdge: number }
  | { readonly mode: 'longest-edge'; readonly longestEdge: number };

export interface PlainPreprocessorConfig {
  readonly resize: PlainResize;
  readonly doResize: boolean;
  readonly resample: PilFilter;
  /** CLIP/LLaVA-1.5: centre crop to crop_size after a shortest-edge resize. */
  readonly centerCrop: { readonly height: number; readonly width: number } | undefined;
  /** LLaVA `do_pad`: pad to a square with the mean colour before resizing. */
  readonly padToSquareBefore: boolean;
  /** Idefics3/SmolVLM `do_pad`: pad the longest-edge-resized image to a square with 0 after resizing. */
  readonly padToSquareAfter: boolean;
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  readonly doNormalize: boolean;
  readonly imageMean: readonly [number, number, number];
  readonly imageStd: readonly [number, number, number];
}

/** Validate a plain-family preprocessor_config.json; every problem in one ModelError (STYLE §2.5). */
export function parsePlainPreprocessorConfig(json: unknown): PlainPreprocessorConfig {
  if (!isObject(json)) throw new ModelError(ErrorCode.ModelInvalid, 'preprocessor_config.json: not a JSON object');
  const problems: string[] = [];
  const type = String(json.image_processor_type ?? '').replace(/Fast$/, '');
  const posInt = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      problems.push(`${key}: must be a positive integer`);
      return 1;
    }
    return v;
  };
  const triple = (key: string, dflt: [number, number, number]): [number, number, number] => {
    const v = json[key] ?? dflt;
    const arr = typeof v === 'number' ? [v, v, v] : v;
    if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      problems.push(`${key}: must be a number or an array of 3 finite numbers`);
      return dflt;
    }
    return [arr[0] as number, arr[1] as number, arr[2] as number];
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = json[key] ?? dflt;
    if (typeof v !== 'boolean') problems.push(`${key}: must be a boolean`);
    return v === true;
  };
  let resize: PlainResize = { mode: 'fixed', height: 1, width: 1 };
  const size = json.size;
  if (isObject(size) && size.height !== undefined) {
    resize = { mode: 'fixed', height: posInt('size.height', size.height), width: posInt('size.width', size.width) };
  } else if (isObject(size) && size.shortest_edge !== undefined) {
    resize = { mode: 'shortest-edge', shortestEdge: posInt('size.shortest_edge', size.shortest_edge) };
  } else if (isObject(size) && size.longest_edge !== undefined) {
    resize = { mode: 'longest-edge', longestEdge: posInt('size.longest_edge', size.longest_edge) };
  } else problems.push('size: must be {height, width}, {shortest_edge} or {longest_edge}');
  const resample = json.resample ?? PilFilter.Bilinear;
  if (!isPilFilter(resample)) problems.push('resample: must be 1 (LANCZOS), 2 (BILINEAR) or 3 (BICUBIC)');
  let centerCrop: PlainPreprocessorConfig['centerCrop'];
  if (json.do_center_crop === true) {
    const c = json.crop_size;
    if (isObject(c))
      centerCrop = { height: posInt('crop_size.height', c.height), width: posInt('crop_size.width', c.width) };
    else if (typeof c === 'number') centerCrop = { height: posInt('crop_size', c), width: posInt('crop_size', c) };
    else problems.push('crop_size: required when do_center_crop is true');
  }
  const doPad = bool('do_pad', false);
  const rf = json.rescale_factor ?? 1 / 255;
  if (typeof rf !== 'number' || !Number.isFinite(rf) || rf <= 0) problems.push('rescale_factor: must be a number > 0');
  const imageStd = triple('image_std', [1, 1, 1]);
  if (!imageStd.every((x) => x > 0)) problems.push('image_std: values must be > 0');
  const cfg: PlainPreprocessorConfig = {
    resize,
    doResize: bool('do_resize', true),
    resample: isPilFilter(resample) ? resample : PilFilter.Bilinear,
    centerCrop,
    padToSquareBefore: doPad && type === 'LlavaImageProcessor',
    padToSquareAfter: doPad && type === 'Idefics3ImageProcessor',
    doRescale: bool('do_rescale', true),
    rescaleFactor: typeof rf === 'number' ? rf : 1 / 255,
    doNormalize: bool('do_normalize', true),
    imageMean: triple('image_mean', [0, 0, 0]),
    imageStd,
  };
  if (problems.length > 0) {
    throw new ModelError(ErrorCode.ModelInvalid, `preprocessor_config.json: ${problems.join('; ')}`);
  }
  return cfg;
}

/** Model input of the plain path: float32 [1, 3, H, W]. */
export interface PlainVisionInput {
  readonly pixelValues: Float32Array;
  readonly dims: [1, 3, number, number];
  /** [height, width] after resize (before crop or pad). */
  readonly resized: [number, number];
}

function toRgb(image: RenderedImage): Uint8Array {
  if (image.channels === 3) return image.data;
  const n = image.width * image.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) out.fill(image.data[i] ?? 0, i * 3, i * 3 + 3);
  return out;
}

/** Place `src` (w×h RGB) at (top, left) of a size×size canvas filled with `fill`. */
function padSquare(src: Uint8Array, w: number, h: number, fill: readonly number[], centred: boolean) {
  const size = Math.max(w, h);
  const out = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) out.set(fill, i * 3);
  const top = centred ? Math.floor((size - h) / 2) : 0;
  const left = centred ? Math.floor((size - w) / 2) : 0;
  for (let y = 0; y < h; y++) out.set(src.subarray(y * w * 3, (y + 1) * w * 3), ((y + top) * size + left) * 3);
  return { data: out, size };
}

/** transformers `get_resize_output_image_size` for the three `size` forms. */
export function plainResizeTarget(h: number, w: number, r: PlainResize): [number, number] {
  if (r.mode === 'fixed') return [r.height, r.width];
  if (r.mode === 'shortest-edge') {
    return h <= w
      ? [r.shortestEdge, Math.trunc((r.shortestEdge * w) / h)]
      : [Math.trunc((r.shortestEdge * h) / w), r.shortestEdge];
  }
  return h >= w
    ? [r.longestEdge, Math.max(1, Math.round((r.longestEdge * w) / h))]
    : [Math.max(1, Math.round((r.longestEdge * h) / w)), r.longestEdge];
}

/** Resize (PIL filter from the config), crop or pad, rescale and normalise one rendered image. */
export function buildPlainInput(image: RenderedImage, cfg: PlainPreprocessorConfig): PlainVisionInput {
  let data = toRgb(image);
  let w = image.width;
  let h = image.height;
  if (cfg.padToSquareBefore) {
    // LLaVA pads with the mean colour (transformers LlavaImageProcessor.pad_to_square, background_color).
    const fill = cfg.imageMean.map((m) => Math.trunc(m * 255));
    const sq = padSquare(data, w, h, fill, true);
    data = sq.data;
    w = h = sq.size;
  }
  const [rh, rw] = cfg.doResize ? plainResizeTarget(h, w, cfg.resize) : [h, w];
  data = resizeBilinearPil(data, w, h, 3, rw, rh, cfg.resample);
  w = rw;
  h = rh;
  if (cfg.centerCrop !== undefined && cfg.centerCrop.height <= h && cfg.centerCrop.width <= w) {
    const { height: ch, width: cw } = cfg.centerCrop;
    const top = Math.floor((h - ch) / 2);
    const left = Math.floor((w - cw) / 2);
    const out = new Uint8Array(ch * cw * 3);
    for (let y = 0; y < ch; y++)
      out.set(data.subarray(((y + top) * w + left) * 3, ((y + top) * w + left + cw) * 3), y * cw * 3);
    data = out;
    w = cw;
    h = ch;
  }
  if (cfg.padToSquareAfter) {
    const sq = padSquare(data, w, h, [0, 0, 0], false);
    data = sq.data;
    w = h = sq.size;
  }
  const lut = normalizationLut(cfg);
  const plane = w * h;
  const pixelValues = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const t = lut[c] as Float32Array;
    for (let i = 0; i < plane; i++) pixelValues[c * plane + i] = t[data[i * 3 + c] ?? 0] ?? 0;
  }
  return { pixelValues, dims: [1, 3, h, w], resized: [rh, rw] };
}

/** One image's model input, whichever family the bundle's preprocessor_config.json names. */
export type VisionInput =
  | ({ readonly family: typeof ImageProcessorFamily.Mllama } & MllamaVisionInput)
  | ({ readonly family: typeof ImageProcessorFamily.Plain } & PlainVisionInput);

export function buildVisionInput(image: RenderedImage, preprocessorConfig: unknown): VisionInput {
  if (imageProcessorFamily(preprocessorConfig) === ImageProcessorFamily.Mllama) {
    return {
      family: ImageProcessorFamily.Mllama,
      ...buildMllamaInput(image, parseMllamaPreprocessorConfig(preprocessorConfig)),
    };
  }
  return {
    family: ImageProcessorFamily.Plain,
    ...buildPlainInput(image, parsePlainPreprocessorConfig(preprocessorConfig)),
  };
}
