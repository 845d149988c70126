import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, type ErrorCode as ErrorCodeT, ModelError, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import { workerScript } from '../runtime-paths.js';
import { type ImageInput, isFloat32Array } from './image-input.js';
import { type ModelIdentity, modelIdentity } from './model-identity.js';
import type { ModelManifest } from './model-manifest.js';
import type { ExecutionProvider } from './vision-language-model.js';
import type {
  DescribeOptions,
  DescribeResult,
  SerializedError,
  WorkerRequest,
  WorkerResponse,
} from './worker-protocol.js';

export type { DescribeResult, ModelInfo } from './worker-protocol.js';

export interface InferenceClientOptions {
  bundleDir: string;
  executionProviders?: ExecutionProvider[];
  intraOpNumThreads?: number;
  /**
   * Hard limit for a describe call without its own: the worker is terminated and a fresh one started.
   * The soft `timeoutMs` of a call stops generation between steps; this one also catches a run stuck
   * inside ONNX Runtime, where no step boundary comes.
   */
  hardTimeoutMs?: number;
}

export interface DescribeCallOptions {
  prompt?: string;
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** Soft deadline: generation stops with stopReason 'timeout' and returns the partial text. */
  timeoutMs?: number;
  /** Hard deadline (see InferenceClientOptions.hardTimeoutMs); default timeoutMs + DEFAULT_HARD_TIMEOUT_GRACE_MS. */
  hardTimeoutMs?: number;
  /** Overrides of the bundle's generation defaults. */
  sampling?: DescribeOptions['sampling'];
}

/** Default hard limit when a call has neither hardTimeoutMs nor timeoutMs. */
export const DEFAULT_HARD_TIMEOUT_MS = 600_000;
/** Slack on top of a call's soft timeout before the worker is killed: the last step may still be running. */
export const DEFAULT_HARD_TIMEOUT_GRACE_MS = 30_000;

const log = childLogger('inference-client');
const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

function revive(e: SerializedError): RadScribeError {
  // ONNX Runtime failures are classified inference-failed where they happen (vision-language-model.ts
  // `run`); anything the worker did not classify stays internal, so the job fails instead of being
  // retried as if it were a runtime hiccup (issue 8: an unclassified inference failure is not retried).
  const effective = (KNOWN_CODES.has(e.code) ? e.code : ErrorCode.Internal) as ErrorCodeT;
  return e.name === 'ModelError' || effective === ErrorCode.ModelInvalid
    ? new ModelError(effective, e.message)
    : new RadScribeError(effective, e.message);
}

interface Pending {
  resolve: (r: DescribeResult[]) => void;
  reject: (e: Error) => void;
}

type Loaded = Extract<WorkerResponse, { type: 'loaded' }>;

/**
 * The inference host is a child process, not a worker_thread: the hard limit must be able to kill a run that
 * is stuck inside ONNX Runtime, and terminating a worker_thread in the middle of a native ORT call can abort
 * the whole gateway (observed: SIGABRT). A child process dies alone. `run()` still never blocks our event
 * loop (js-stack.md §1 allows a worker_thread or a child process). Advanced serialization keeps typed arrays.
 */
class Worker {
  private readonly child: ChildProcess;
  private exited: Promise<void>;
  constructor(script: string) {
    // The child's stdout goes to our stderr: `radscribe describe --json` owns stdout.
    this.child = fork(script, [], { serialization: 'advanced', stdio: ['ignore', 2, 2, 'ipc'] });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }
  on(ev: 'message', fn: (m: WorkerResponse) => void): void;
  on(ev: 'error', fn: (e: Error) => void): void;
  on(ev: 'exit', fn: (code: number) => void): void;
  on(ev: string, fn: (...a: never[]) => void): void {
    if (ev === 'exit') this.child.on('exit', (code, signal) => (fn as (c: number) => void)(code ?? (signal ? 128 : 1)));
    else this.child.on(ev, fn as (...a: unknown[]) => void);
  }
  off(ev: string, fn: (...a: never[]) => void): void {
    this.child.off(ev, fn as (...a: unknown[]) => void);
  }
  postMessage(msg: WorkerRequest): void {
    if (this.child.connected) this.child.send(msg);
  }
  /** Process ID of the inference host (for health and tests). */
  get pid(): number | undefined {
    return this.child.pid;
  }
  async terminate(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Starts a worker and loads the bundle in it; terminates the worker if loading fails. */
async function spawnWorker(opts: InferenceClientOptions): Promise<{ worker: Worker; loaded: Loaded }> {
  const worker = new Worker(workerScript('inference/inference-worker'));
  let detach = () => {};
  const loaded = await new Promise<Loaded>((resolve, reject) => {
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
  return { worker, loaded };
}

/**
 * Main-thread handle on the inference worker, a child process (see `Worker` above for why not the
 * worker_thread of STYLE §2.1). Owns the Worker; `close()` is idempotent. Worker failures become typed errors here and never crash the host. A
 * call that passes its hard limit, or a worker that dies, costs only the calls in flight: the worker is
 * replaced by a fresh one (same bundle, same options) and later calls wait for it.
 */
export class InferenceClient {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private failure: RadScribeError | undefined;
  private closing: Promise<void> | undefined;
  private restarting: Promise<void> | undefined;
  /** Number of times the worker was replaced (hard timeout or crash). */
  restarts = 0;

  private constructor(
    private worker: Worker,
    private readonly opts: InferenceClientOptions,
    private readonly loaded: Loaded,
    /** The loaded model as the SR names it (name, version, Device UID, provider in use). */
    readonly identity: ModelIdentity,
  ) {
    this.attach(worker);
  }

  get manifest(): ModelManifest {
    return this.loaded.manifest;
  }
  /** EP the sessions actually loaded on. */
  get provider(): string {
    return this.loaded.provider;
  }
  get bundleDir(): string {
    return this.loaded.bundleDir;
  }
  /** Absolute path of preprocessor_config.json, for the tiler. */
  /** Process ID of the child process that owns the ONNX Runtime sessions. */
  get inferencePid(): number | undefined {
    return this.worker.pid;
  }

  get preprocessorConfigPath(): string {
    return this.loaded.preprocessorConfigPath;
  }
  get preprocessorConfig(): Record<string, unknown> {
    return this.loaded.preprocessorConfig;
  }
  /** Whether describeBatch decodes several images in one pass (else one after another in the worker). */
  get dynamicBatch(): boolean {
    return this.loaded.dynamicBatch;
  }

  private attach(worker: Worker): void {
    worker.on('message', (msg: WorkerResponse) => {
      if (worker === this.worker) this.onMessage(msg);
    });
    worker.on('error', (err) => {
      if (worker !== this.worker) return;
      this.replaceWorker(
        new RadScribeError(ErrorCode.InferenceFailed, `inference worker crashed: ${err.message}`, { cause: err }),
      );
    });
    worker.on('exit', (code) => {
      if (worker !== this.worker || this.closed) return;
      this.replaceWorker(new RadScribeError(ErrorCode.InferenceFailed, `inference worker exited with code ${code}`));
    });
  }

  static async start(opts: InferenceClientOptions): Promise<InferenceClient> {
    const { worker, loaded } = await spawnWorker(opts);
    log.info('inference worker ready', {
      name: loaded.manifest.name,
      version: loaded.manifest.version,
      family: loaded.manifest.modelFamily,
      provider: loaded.provider,
    });
    let identity: ModelIdentity;
    try {
      // The Device UID hashes manifest.json as stored (PS3.3 C.17.5: it changes whenever the model does).
      const bytes = new Uint8Array(readFileSync(path.join(loaded.bundleDir, 'manifest.json')));
      identity = modelIdentity(loaded.manifest, bytes, loaded.provider);
    } catch (err: unknown) {
      await worker.terminate();
      throw err;
    }
    return new InferenceClient(worker, opts, loaded, identity);
  }

  /**
   * Terminates the current worker, fails the calls in flight with `err`, and starts a fresh worker. Calls made
   * meanwhile wait for it; if it cannot start, the client fails permanently with that error.
   */
  private replaceWorker(err: RadScribeError): void {
    if (this.closed || this.restarting) return;
    log.error('inference worker replaced', { error: err.message, code: err.code });
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    const old = this.worker;
    this.restarts++;
    this.restarting = (async () => {
      await old.terminate().catch(() => undefined);
      try {
        const { worker } = await spawnWorker(this.opts);
        if (this.closed) {
          await worker.terminate();
          this.failure ??= new RadScribeError(ErrorCode.InferenceFailed, 'InferenceClient closed');
          return;
        }
        this.worker = worker;
        this.attach(worker);
        log.info('inference worker restarted', { restarts: this.restarts });
      } catch (e: unknown) {
        this.failure = e instanceof RadScribeError ? e : new RadScribeError(ErrorCode.InferenceFailed, String(e));
      } finally {
        this.restarting = undefined;
      }
    })();
  }

  /** Describes one preprocessed image; see describeBatch. */
  async describe(image: ImageInput, opts: DescribeCallOptions = {}): Promise<DescribeResult> {
    const [r] = await this.describeBatch([image], opts);
    return r as DescribeResult;
  }

  /**
   * Describes several preprocessed images with one prompt, in one batch when the graphs allow it. The pixel
   * buffers are serialized to the inference process (one copy; the callers' arrays stay usable).
   */
  async describeBatch(images: readonly ImageInput[], opts: DescribeCallOptions = {}): Promise<DescribeResult[]> {
    if (this.restarting) await this.restarting;
    if (this.failure) throw this.failure;
    if (this.closed) throw new RadScribeError(ErrorCode.InferenceFailed, 'InferenceClient is closed');
    for (const image of images) {
      if (!isFloat32Array(image?.pixelValues)) {
        throw new RadScribeError(ErrorCode.RequestInvalid, 'invalid image input: pixelValues must be a Float32Array');
      }
    }
    const id = this.nextId++;
    const worker = this.worker;
    const hardMs =
      opts.hardTimeoutMs ??
      (opts.timeoutMs !== undefined
        ? opts.timeoutMs + DEFAULT_HARD_TIMEOUT_GRACE_MS
        : (this.opts.hardTimeoutMs ?? DEFAULT_HARD_TIMEOUT_MS));
    return new Promise<DescribeResult[]>((resolve, reject) => {
      const onAbort = () => worker.postMessage({ type: 'abort', id } satisfies WorkerRequest);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => {
        if (!this.pending.has(id)) return;
        this.replaceWorker(
          new RadScribeError(
            ErrorCode.Timeout,
            `inference exceeded its hard limit of ${hardMs} ms; the worker was terminated and restarted`,
          ),
        );
      }, hardMs);
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
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
        images: images.map((image) => ({
          pixelValues: image.pixelValues,
          dims: [...image.dims],
          ...(image.aspectRatioId !== undefined ? { aspectRatioId: image.aspectRatioId } : {}),
          ...(image.aspectRatioMask !== undefined ? { aspectRatioMask: [...image.aspectRatioMask] } : {}),
        })),
        opts: {
          ...(opts.prompt !== undefined ? { prompt: opts.prompt } : {}),
          ...(opts.maxNewTokens !== undefined ? { maxNewTokens: opts.maxNewTokens } : {}),
          ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
          ...(opts.sampling !== undefined ? { sampling: opts.sampling } : {}),
        },
      };
      worker.postMessage(req);
      if (opts.signal?.aborted) onAbort();
    });
  }

  private onMessage(msg: WorkerResponse): void {
    if (msg.type === 'result' || msg.type === 'error') {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === 'result') p?.resolve(msg.results);
      else p?.reject(revive(msg.error));
    }
  }

  /** Disposes the sessions in the worker, then terminates it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.restarting) await this.restarting;
      const worker = this.worker;
      if (!this.failure) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5_000);
          worker.on('message', (msg: WorkerResponse) => {
            if (msg.type === 'disposed') {
              clearTimeout(timer);
              resolve();
            }
          });
          worker.postMessage({ type: 'dispose' } satisfies WorkerRequest);
        });
      }
      for (const p of this.pending.values())
        p.reject(new RadScribeError(ErrorCode.InferenceFailed, 'InferenceClient closed'));
      this.pending.clear();
      await worker.terminate();
    })();
    return this.closing;
  }
}
