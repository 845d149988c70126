import { Worker } from 'node:worker_threads';
import { ErrorCode, type ErrorCode as ErrorCodeT, ModelError, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import { workerScript } from '../runtime-paths.js';
import { type ImageInput, isFloat32Array } from './image-input.js';
import type { ExecutionProvider } from './mllama-model.js';
import type { ModelManifest } from './model-manifest.js';
import type { DescribeResult, SerializedError, WorkerRequest, WorkerResponse } from './worker-protocol.js';

export type { DescribeResult, ModelInfo } from './worker-protocol.js';

/**
 * Main-thread handle on the inference worker (STYLE §2.1: inference runs in a worker_thread). Owns the
 * Worker; `close()` is idempotent. Worker failures become typed errors here and never crash the host.
 */

export interface InferenceClientOptions {
  bundleDir: string;
  executionProviders?: ExecutionProvider[];
  intraOpNumThreads?: number;
}

export interface DescribeCallOptions {
  prompt?: string;
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** Soft deadline: generation stops with stopReason 'timeout' and returns the partial text. */
  timeoutMs?: number;
}

const log = childLogger('inference-client');
const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

function revive(e: SerializedError): RadScribeError {
  const code = (KNOWN_CODES.has(e.code) ? e.code : ErrorCode.InferenceFailed) as ErrorCodeT;
  // Unclassified failures inside the worker are ONNX/runtime trouble: inference-failed, not internal.
  const effective = code === ErrorCode.Internal ? ErrorCode.InferenceFailed : code;
  return e.name === 'ModelError' || effective === ErrorCode.ModelInvalid
    ? new ModelError(effective, e.message)
    : new RadScribeError(effective, e.message);
}

interface Pending {
  resolve: (r: DescribeResult) => void;
  reject: (e: Error) => void;
}

export class InferenceClient {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private failure: RadScribeError | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly manifest: ModelManifest,
    /** EP the sessions actually loaded on. */
    readonly provider: string,
    readonly bundleDir: string,
    /** Absolute path of preprocessor_config.json, for the tiler. */
    readonly preprocessorConfigPath: string,
  ) {
    worker.on('message', (msg: WorkerResponse) => this.onMessage(msg));
    worker.on('error', (err) =>
      this.failAll(
        new RadScribeError(ErrorCode.InferenceFailed, `inference worker crashed: ${err.message}`, { cause: err }),
      ),
    );
    worker.on('exit', (code) => {
      if (!this.closed)
        this.failAll(new RadScribeError(ErrorCode.InferenceFailed, `inference worker exited with code ${code}`));
    });
  }

  static async start(opts: InferenceClientOptions): Promise<InferenceClient> {
    const worker = new Worker(workerScript('inference/inference-worker'));
    let detach = () => {};
    const loaded = await new Promise<Extract<WorkerResponse, { type: 'loaded' }>>((resolve, reject) => {
      const onMessage = (msg: WorkerResponse) => {
        if (msg.type === 'loaded') resolve(msg);
        else if (msg.type === 'load-failed') reject(revive(msg.error));
      };
      const onError = (err: Error) =>
        reject(
          new RadScribeError(ErrorCode.InferenceFailed, `inference worker crashed during load: ${err.message}`, {
            cause: err,
          }),
        );
      const onExit = (code: number) =>
        reject(new RadScribeError(ErrorCode.InferenceFailed, `inference worker exited with code ${code} during load`));
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      // Only our own listeners: Worker keeps internal ones (ref counting), so never removeAllListeners().
      detach = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const req: WorkerRequest = {
        type: 'load',
        bundleDir: opts.bundleDir,
        ...(opts.executionProviders ? { executionProviders: opts.executionProviders } : {}),
        ...(opts.intraOpNumThreads !== undefined ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
      };
      worker.postMessage(req);
    })
      .catch(async (err: unknown) => {
        detach();
        await worker.terminate();
        throw err;
      })
      .finally(() => detach());
    log.info('inference worker ready', {
      name: loaded.manifest.name,
      version: loaded.manifest.version,
      provider: loaded.provider,
    });
    return new InferenceClient(
      worker,
      loaded.manifest,
      loaded.provider,
      loaded.bundleDir,
      loaded.preprocessorConfigPath,
    );
  }

  /**
   * Describes one preprocessed image. The pixel buffer is transferred to the worker (zero-copy), so the
   * caller's `pixelValues` is detached afterwards.
   */
  describe(image: ImageInput, opts: DescribeCallOptions = {}): Promise<DescribeResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new RadScribeError(ErrorCode.InferenceFailed, 'InferenceClient is closed'));
    if (!isFloat32Array(image?.pixelValues)) {
      return Promise.reject(
        new RadScribeError(ErrorCode.RequestInvalid, 'invalid image input: pixelValues must be a Float32Array'),
      );
    }
    const id = this.nextId++;
    return new Promise<DescribeResult>((resolve, reject) => {
      const onAbort = () => this.worker.postMessage({ type: 'abort', id } satisfies WorkerRequest);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => opts.signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (r) => {
          cleanup();
          resolve(r);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      });
      const req: WorkerRequest = {
        type: 'describe',
        id,
        image: {
          pixelValues: image.pixelValues,
          dims: [...image.dims],
          aspectRatioId: image.aspectRatioId,
          aspectRatioMask: [...image.aspectRatioMask],
        },
        opts: {
          ...(opts.prompt !== undefined ? { prompt: opts.prompt } : {}),
          ...(opts.maxNewTokens !== undefined ? { maxNewTokens: opts.maxNewTokens } : {}),
          ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
        },
      };
      // A SharedArrayBuffer-backed or subarray view cannot be transferred safely; copy in that case. The tag
      // check (not instanceof) also accepts buffers from another realm (vm contexts, jest).
      const buf = image.pixelValues.buffer;
      const transferable =
        Object.prototype.toString.call(buf) === '[object ArrayBuffer]' &&
        image.pixelValues.byteOffset === 0 &&
        image.pixelValues.byteLength === buf.byteLength;
      this.worker.postMessage(req, transferable ? [buf as ArrayBuffer] : []);
      if (opts.signal?.aborted) onAbort();
    });
  }

  private onMessage(msg: WorkerResponse): void {
    if (msg.type === 'result' || msg.type === 'error') {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === 'result') p?.resolve(msg.result);
      else p?.reject(revive(msg.error));
    }
  }

  private failAll(err: RadScribeError): void {
    this.failure ??= err;
    log.error('inference worker failed', { error: err.message });
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Disposes the sessions in the worker, then terminates it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (!this.failure) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5_000);
          this.worker.on('message', (msg: WorkerResponse) => {
            if (msg.type === 'disposed') {
              clearTimeout(timer);
              resolve();
            }
          });
          this.worker.postMessage({ type: 'dispose' } satisfies WorkerRequest);
        });
      }
      for (const p of this.pending.values())
        p.reject(new RadScribeError(ErrorCode.InferenceFailed, 'InferenceClient closed'));
      this.pending.clear();
      await this.worker.terminate();
    })();
    return this.closing;
  }
}
