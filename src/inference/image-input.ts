import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * One preprocessed image. Mllama (model-contract §1.2): pixel_values [1, 1, maxTiles, 3, H, W] plus the
 * aspect ratio id and mask. Embedding-merge (SigLIP-style plain resize): pixel_values [1, 3, H, W] and no
 * aspect ratio fields.
 */
export interface ImageInput {
  pixelValues: Float32Array;
  dims: number[];
  /** Mllama: 1..8, index+1 into supported_aspect_ratios; 0 (padded slot) is never valid for a real image. */
  aspectRatioId?: number;
  /** Mllama: [maxTiles] of 0/1, real tiles first. */
  aspectRatioMask?: number[];
}

export interface ImageGeometry {
  maxTiles: number;
  imageSize: number;
  numChannels: number;
  maxAspectRatioId: number;
}

/**
 * Realm-independent check: a Float32Array that crossed a worker boundary (structured clone) or comes
 * from another vm context (jest) fails `instanceof` although it is one.
 */
export function isFloat32Array(v: unknown): v is Float32Array {
  return ArrayBuffer.isView(v) && Object.prototype.toString.call(v) === '[object Float32Array]';
}

/** Rejects malformed input before it reaches ORT (model-contract §5.7: aspect_ratio_id is a gather index). */
export function validateImageInput(img: ImageInput, geo: ImageGeometry): void {
  const problems: string[] = [];
  const expected = [1, 1, geo.maxTiles, geo.numChannels, geo.imageSize, geo.imageSize];
  if (!isFloat32Array(img.pixelValues)) problems.push('pixelValues must be a Float32Array');
  if (!Array.isArray(img.dims) || img.dims.length !== 6 || img.dims.some((d, i) => d !== expected[i])) {
    problems.push(`dims must be [${expected.join(',')}]`);
  } else if (img.pixelValues.length !== img.dims.reduce((a, b) => a * b, 1)) {
    problems.push(`pixelValues has ${img.pixelValues.length} values, dims need ${img.dims.reduce((a, b) => a * b, 1)}`);
  }
  const id = img.aspectRatioId ?? 0;
  if (!(Number.isInteger(id) && id >= 1 && id <= geo.maxAspectRatioId)) {
    problems.push(`aspectRatioId must be an integer in 1..${geo.maxAspectRatioId}`);
  }
  const m = img.aspectRatioMask;
  if (!Array.isArray(m) || m.length !== geo.maxTiles || m.some((v) => v !== 0 && v !== 1) || m[0] !== 1) {
    problems.push(`aspectRatioMask must be ${geo.maxTiles} values of 0/1 with the first = 1`);
  } else if (m.some((v, i) => v === 1 && i > 0 && m[i - 1] === 0)) {
    problems.push('aspectRatioMask must list real tiles first');
  }
  if (problems.length > 0) {
    throw new RadScribeError(ErrorCode.RequestInvalid, `invalid image input: ${problems.join('; ')}`);
  }
}

/** Embedding-merge input: pixel_values [1, C, S, S] (one fixed-size image, no tiles). */
export function validatePlainImageInput(img: ImageInput, channels: number, size: number): void {
  const problems: string[] = [];
  const expected = [1, channels, size, size];
  if (!isFloat32Array(img.pixelValues)) problems.push('pixelValues must be a Float32Array');
  if (!Array.isArray(img.dims) || img.dims.length !== 4 || img.dims.some((d, i) => d !== expected[i])) {
    problems.push(`dims must be [${expected.join(',')}]`);
  } else if (img.pixelValues.length !== expected.reduce((a, b) => a * b, 1)) {
    problems.push(`pixelValues has ${img.pixelValues.length} values, dims need ${expected.reduce((a, b) => a * b, 1)}`);
  }
  if (problems.length > 0) {
    throw new RadScribeError(ErrorCode.RequestInvalid, `invalid image input: ${problems.join('; ')}`);
  }
}

export function numRealTiles(mask: readonly number[]): number {
  return mask.filter((v) => v === 1).length;
}
