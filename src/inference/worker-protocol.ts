import type { GenerationTimings } from './generate.js';
import type { ImageInput } from './image-input.js';
import type { ModelManifest } from './model-manifest.js';
import type { StopReason } from './stopping.js';
import type { ExecutionProvider } from './vision-language-model.js';

/** Messages between InferenceClient (main thread) and inference-worker.ts. Plain structured-clone data. */

export interface LoadRequest {
  type: 'load';
  bundleDir: string;
  executionProviders?: ExecutionProvider[];
  intraOpNumThreads?: number;
}

export interface DescribeOptions {
  prompt?: string;
  maxNewTokens?: number;
  timeoutMs?: number;
  /** Overrides of the bundle's generation defaults (manifest `generation`). */
  sampling?: {
    doSample?: boolean;
    temperature?: number;
    topK?: number;
    topP?: number;
    repetitionPenalty?: number;
    noRepeatNgramSize?: number;
    seed?: number;
  };
}

/** Several images with one prompt; decoded as one batch when the graphs allow it. */
export interface DescribeRequest {
  type: 'describe';
  id: number;
  images: ImageInput[];
  opts: DescribeOptions;
}

export interface AbortRequest {
  type: 'abort';
  id: number;
}

export interface DisposeRequest {
  type: 'dispose';
}

export type WorkerRequest = LoadRequest | DescribeRequest | AbortRequest | DisposeRequest;

export interface ModelInfo {
  name: string;
  version: string;
  path: string;
  fixture: boolean;
  label?: string;
  deviceUid?: string;
}

export interface DescribeResult {
  text: string;
  /** Tokens of the rendered prompt (after image-token expansion). */
  promptTokens: number;
  tokenIds: number[];
  stopReason: StopReason;
  timings: GenerationTimings;
  provider: string;
  model: ModelInfo;
}

export interface SerializedError {
  name: string;
  code: string;
  message: string;
}

export type WorkerResponse =
  | {
      type: 'loaded';
      manifest: ModelManifest;
      provider: string;
      bundleDir: string;
      preprocessorConfigPath: string;
      preprocessorConfig: Record<string, unknown>;
      dynamicBatch: boolean;
    }
  | { type: 'load-failed'; error: SerializedError }
  | { type: 'result'; id: number; results: DescribeResult[] }
  | { type: 'error'; id: number; error: SerializedError }
  | { type: 'disposed' };
