import type { ErrorCode } from '../errors.js';

/** Messages between ImagePrepClient and image-prep-worker. */
export interface PrepRequest {
  readonly id: number;
  readonly filePath: string;
  readonly frameIndex: number;
  /** Parsed preprocessor_config.json of the model bundle; the tiler is driven by it, never hard-coded. */
  readonly preprocessorConfig: unknown;
}

export interface PreparedInput {
  readonly pixelValues: Float32Array;
  readonly dims: number[];
  readonly aspectRatioId: number;
  readonly aspectRatioMask: number[];
  readonly canvas: [number, number];
  readonly tiles: [number, number];
  readonly resized: [number, number];
}

export type PrepResponse =
  | {
      readonly id: number;
      readonly ok: true;
      readonly input: PreparedInput;
      readonly image: { width: number; height: number; channels: number };
    }
  | { readonly id: number; readonly ok: false; readonly code: ErrorCode; readonly message: string };
