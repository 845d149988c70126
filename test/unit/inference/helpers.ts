import path from 'node:path';
import type { ImageInput } from '../../../src/inference/image-input.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

export const TINY_MLLAMA_DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama');

export const TILE_VALUES = 3 * 560 * 560;

/** pixel_values [1,1,4,3,560,560] with each tile filled by `fill(tile, i)`. */
export function makeImage(
  fill: (tile: number, i: number) => number,
  aspectRatioId = 1,
  aspectRatioMask: number[] = [1, 0, 0, 0],
): ImageInput {
  const pixelValues = new Float32Array(4 * TILE_VALUES);
  for (let t = 0; t < 4; t++) {
    for (let i = 0; i < TILE_VALUES; i++) pixelValues[t * TILE_VALUES + i] = fill(t, i);
  }
  return { pixelValues, dims: [1, 1, 4, 3, 560, 560], aspectRatioId, aspectRatioMask };
}

/** A deterministic non-constant pattern so patches differ from one another. */
export function pattern(seed: number): (tile: number, i: number) => number {
  return (tile, i) => Math.sin(i * 0.001 + seed + tile * 0.37);
}

export const TINY_MERGE_DIR = path.join(FIXTURES_DIR, 'models', 'tiny-merge-vlm');

/** Embedding-merge pixel_values [1, 3, size, size] with `fill(i)`. */
export function makePlainImage(fill: (i: number) => number, size = 224): ImageInput {
  const pixelValues = new Float32Array(3 * size * size);
  for (let i = 0; i < pixelValues.length; i++) pixelValues[i] = fill(i);
  return { pixelValues, dims: [1, 3, size, size] };
}
