import { Worker } from 'node:worker_threads';
import { DEFAULT_DICOM_LIMITS, type DicomLimits } from '../dicom/limits.js';
import { ErrorCode, RadScribeError } from '../errors.js';
import { workerScript } from '../runtime-paths.js';
import { applyWasmEngineFlags } from '../wasm-engine-flags.js';
import {
  ImagePrepError,
  type PreparedImage,
  PrepFailure,
  type PrepRequest,
  type PrepResponse,
} from './image-prep-types.js';

export const DEFAULT_FRAME_TIMEOUT_MS = 60_000;
export const DEFAULT_WORKER_MEMORY_MB = 2048;
/** Loading the decoders (dcmjs, codecs, sharp) into a fresh worker; not counted against a frame. */
export const DEFAULT_WORKER_START_TIMEOUT_MS = 30_000;

export interface ImagePrepOptions {
  frameTimeoutMs?: number;
  maxOldGenerationSizeMb?: number;
  /** Checked in the worker before a file is parsed and decoded; default DEFAULT_DICOM_LIMITS. */
  limits?: DicomLimits;
}

/**
 * Owns one image-preparation worker thread. A frame that exceeds its time limit or the worker's
 * memory cap kills the worker (a hostile file must not hang or crash the gateway); the next request
 * starts a fresh one. One request at a time: the GPU model is the bottleneck, not decoding.
 */
export class ImagePrepClient {
  private worker: Worker | undefined;
  private started: Promise<Worker> | undefined;
  private nextId = 1;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly memoryMb: number;
  private readonly limits: DicomLimits;
  private readonly startTimeoutMs: number;

  constructor(opts: ImagePrepOptions = {}) {
    this.timeoutMs = opts.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    this.memoryMb = opts.maxOldGenerationSizeMb ?? DEFAULT_WORKER_MEMORY_MB;
    this.limits = opts.limits ?? DEFAULT_DICOM_LIMITS;
    this.startTimeoutMs = Math.max(this.timeoutMs, DEFAULT_WORKER_START_TIMEOUT_MS);
  }

  /**
   * One frame of a file as model input, with the file's header from the same read. A frame that
   * cannot be prepared rejects with an {@link ImagePrepError}.
   */
  prepare(filePath: string, frameIndex: number, preprocessorConfig: unknown): Promise<PreparedImage> {
    const run = () => this.run({ id: this.nextId++, filePath, frameIndex, preprocessorConfig, limits: this.limits });
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * The worker, once it has loaded its modules and said so. Its start is timed apart from any
   * frame: a start that fails or is slow on a loaded machine is no file's fault, so it rejects with
   * a plain RadScribeError, which never quarantines an instance (issue 9).
   */
  private ensureWorker(): Promise<Worker> {
    if (this.closed)
      return Promise.reject(new RadScribeError(ErrorCode.Internal, 'image preparation client is closed'));
    if (this.worker && this.started) return this.started;
    applyWasmEngineFlags();
    const worker = new Worker(workerScript('pipeline/image-prep-worker'), {
      resourceLimits: { maxOldGenerationSizeMb: this.memoryMb },
    });
    worker.unref();
    this.worker = worker;
    const started = new Promise<Worker>((resolve, reject) => {
      const done = (err?: RadScribeError) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onFailure);
        worker.off('exit', onFailure);
        if (!err) return resolve(worker);
        if (this.worker === worker) this.forget();
        void worker.terminate();
        reject(err);
      };
      const onMessage = (m: unknown) => {
        if ((m as { ready?: unknown } | null)?.ready === true) done();
      };
      const onFailure = (e: unknown) =>
        done(new RadScribeError(ErrorCode.Internal, `image preparation worker did not start: ${String(e)}`));
      const timer = setTimeout(
        () =>
          done(
            new RadScribeError(
              ErrorCode.Timeout,
              `image preparation worker did not start in ${this.startTimeoutMs} ms`,
            ),
          ),
        this.startTimeoutMs,
      );
      worker.on('message', onMessage);
      worker.on('error', onFailure);
      worker.on('exit', onFailure);
    });
    this.started = started;
    return started;
  }

  private forget(): void {
    this.worker = undefined;
    this.started = undefined;
  }

  private async run(req: PrepRequest): Promise<PreparedImage> {
    const worker = await this.ensureWorker();
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const kill = (err: ImagePrepError) => {
        cleanup();
        if (this.worker === worker) this.forget();
        void worker.terminate();
        reject(err);
      };
      const timer = setTimeout(
        () =>
          kill(
            new ImagePrepError(
              ErrorCode.Timeout,
              `preparing frame ${req.frameIndex + 1} exceeded ${this.timeoutMs} ms`,
              undefined,
              PrepFailure.TimedOut,
            ),
          ),
        this.timeoutMs,
      );
      const onMessage = (res: PrepResponse) => {
        if (res.id !== req.id) return;
        cleanup();
        if (res.ok) resolve({ input: res.input, header: res.header, image: res.image });
        else reject(new ImagePrepError(res.code, res.message, res.header, PrepFailure.Rejected, res.violation));
      };
      const onError = (err: Error) => {
        const oom = /memory/i.test(err.message) || (err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY';
        kill(
          new ImagePrepError(
            oom ? ErrorCode.OutOfResources : ErrorCode.Internal,
            `image preparation worker failed: ${err.message}`,
            undefined,
            oom ? PrepFailure.WorkerOutOfMemory : PrepFailure.WorkerCrashed,
          ),
        );
      };
      const onExit = (code: number) =>
        kill(
          new ImagePrepError(
            ErrorCode.Internal,
            `image preparation worker exited (${code})`,
            undefined,
            PrepFailure.WorkerCrashed,
          ),
        );
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const w = this.worker;
    this.forget();
    if (w) await w.terminate();
  }
}
