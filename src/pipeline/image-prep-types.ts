import type { NaturalDataset } from '../dicom/dataset.js';
import type { VisionInput } from '../dicom/image-processor.js';
import type { DicomLimits } from '../dicom/limits.js';
import { type ErrorCode, RadScribeError } from '../errors.js';

/** Messages between ImagePrepClient and image-prep-worker. */
export interface PrepRequest {
  readonly id: number;
  readonly filePath: string;
  readonly frameIndex: number;
  /** Parsed preprocessor_config.json of the model bundle; the tiler is driven by it, never hard-coded. */
  readonly preprocessorConfig: unknown;
  /** The DICOM limits checked before the file is parsed and decoded (config `dicomLimits`). */
  readonly limits: DicomLimits;
}

/**
 * The model input for one frame, in whichever form the bundle's preprocessor_config.json names:
 * Mllama tiles (pixel values, aspect ratio id and mask) or the plain resize/normalise path.
 */
export type PreparedInput = VisionInput;

/**
 * One frame made ready for the model, and the instance's header: its data set without Pixel Data
 * (7FE0,0010), taken from the same parse of the same file read (issue 8: every file parsed once;
 * the SR writer copies the patient and study modules from it, PS3.3 C.17.2). The image-prep worker
 * is the only code that opens a stored file during a job.
 */
export interface PreparedImage {
  readonly input: PreparedInput;
  readonly header: NaturalDataset;
  readonly image: { readonly width: number; readonly height: number; readonly channels: number };
}

export type PrepResponse =
  | ({ readonly id: number; readonly ok: true } & PreparedImage)
  | {
      readonly id: number;
      readonly ok: false;
      readonly code: ErrorCode;
      readonly message: string;
      /** The DICOM limit broken, for code dicom-hostile (src/dicom/limits.ts LimitViolation). */
      readonly violation?: string;
      /** Present when the file parsed but the frame could not be prepared (e.g. no decoder for its syntax). */
      readonly header?: NaturalDataset;
    };

/**
 * How a frame failed to be prepared. Closed set. Everything but `rejected` means the worker thread
 * died or was killed while it held the file, so the file is the likely culprit (issue 9: such an
 * instance is quarantined after its first crash, never retried).
 */
export const PrepFailure = {
  /** The worker answered with a typed error (unreadable, unsupported, a broken DICOM limit). */
  Rejected: 'rejected',
  /** The worker thread hit its V8 heap cap (ERR_WORKER_OUT_OF_MEMORY). */
  WorkerOutOfMemory: 'worker-out-of-memory',
  /** The worker thread threw outside the handler or exited. */
  WorkerCrashed: 'worker-crashed',
  /** The frame ran past its time limit and the worker was terminated. */
  TimedOut: 'timed-out',
} as const;
export type PrepFailure = (typeof PrepFailure)[keyof typeof PrepFailure];

/**
 * A frame that could not be prepared. `header` is the instance's header when the file itself parsed
 * (a transfer syntax no decoder handles): the transcoding fallback then takes only the pixels from the
 * PACS's copy, and the SR's evidence stays the header of the instance we stored.
 */
export class ImagePrepError extends RadScribeError {
  override name = 'ImagePrepError';
  readonly header: NaturalDataset | undefined;
  readonly failure: PrepFailure;
  /** The DICOM limit the worker found broken (code dicom-hostile). */
  readonly violation: string | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    header?: NaturalDataset,
    failure: PrepFailure = PrepFailure.Rejected,
    violation?: string,
  ) {
    super(code, message);
    this.header = header;
    this.failure = failure;
    this.violation = violation;
  }
}
