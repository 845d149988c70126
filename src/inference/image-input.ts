import { ErrorCode, RadScribeError } from '../errors.js';

/** One preprocessed image as the tiler emits it (model-contract §1.2): pixel_values [1, 1, maxTiles, 3, H, W]. */
export interface ImageInput {
  pixelValues: Float32Array;
  dims: number[];
  /** 1..8, index+1 into supported_aspect_ratios; 0 (padded slot) is never valid for a real image. */
  aspectRatioId: number;
  /** [maxTiles] of 0/1, real tiles first. */
  aspectRatioMask: number[];
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
  if (!(Number.isInteger(img.aspectRatioId) && img.aspectRatioId >= 1 && img.aspectRatioId <= geo.maxAspectRatioId)) {
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

export function numRealTiles(mask: readonly number[]): number {
  return mask.filter((v) => v === 1).length;
}
