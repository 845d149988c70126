import type { VisionInput } from '../dicom/image-processor.js';
import type { ErrorCode } from '../errors.js';

/** Messages between ImagePrepClient and image-prep-worker. */
export interface PrepRequest {
  readonly id: number;
  readonly filePath: string;
  readonly frameIndex: number;
  /** Parsed preprocessor_config.json of the model bundle; the tiler is driven by it, never hard-coded. */
  readonly preprocessorConfig: unknown;
}

/**
 * The model input for one frame, in whichever form the bundle's preprocessor_config.json names:
 * Mllama tiles (pixel values, aspect ratio id and mask) or the plain resize/normalise path.
 */
export type PreparedInput = VisionInput;

export type PrepResponse =
  | {
      readonly id: number;
      readonly ok: true;
      readonly input: PreparedInput;
      readonly image: { width: number; height: number; channels: number };
    }
  | { readonly id: number; readonly ok: false; readonly code: ErrorCode; readonly message: string };
