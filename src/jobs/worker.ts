import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { CompletenessConfig } from '../config/completeness.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import { JobQueue } from './job-queue.js';
import { COUNT_PENDING_WORK } from './queries.js';
import { type CompletenessPolicy, promoteStableStudies } from './study-stability.js';
import type { Job, JobHandler, JobProgress } from './types.js';

/**
 * The job worker (medplum `queue/worker.ts`): a self-rescheduling loop (js-stack.md §10: no cron for
 * polling) that promotes stable studies, claims due jobs, runs the injected handler under a renewed
 * lease, and records the outcome with the error's code (STYLE rule 2).
 */

export const DEFAULT_POLL_INTERVAL_MS = 1_000;
/**
 * How long a job stays claimed without a renewal (config `jobs.leaseMs`). The worker renews it
 * every leaseMs/3 while the job runs, however long the job takes (the model runs in its own
 * process, so the event loop that renews is free), so the lease only has to outlast a stalled
 * renewal or a short database outage. Short, so that a job of a host that died is taken over by
 * another gateway within a minute (issue 15: "keep the lease short with a heartbeat for long
 * jobs"); this host's own dead workers' jobs are reclaimed at its start at once.
 */
export const DEFAULT_LEASE_MS = 60_000;
/** One GPU, one model: one study at a time. */
export const DEFAULT_CONCURRENCY = 1;
/** Quiet period after the last instance before a study counts as complete. */
export const DEFAULT_STABILITY_WINDOW_MS = 30_000;
export const DEFAULT_RUN_UNTIL_IDLE_TIMEOUT_MS = 120_000;

/**
 * Worker ids are `<host>:<pid>:<random>` (the default below). True when `workerId` names a worker on
 * this host whose process no longer exists. A pid reused by another process reads as alive: that
 * lease then runs out as it always did. Ids of another form (set by a caller) are never judged dead.
 */
export function isDeadLocalWorker(workerId: string, host = hostname()): boolean {
  const m = /^(.*):(\d+):[^:]+$/.exec(workerId);
  if (!m || m[1] !== host) return false;
  const pid = Number(m[2]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err: unknown) {
    // EPERM: the pid exists under another user, so it is not known to be dead.
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface JobWorkerOptions {
  readonly pool: pg.Pool;
  readonly handler: JobHandler;
  /** Defaults to a JobQueue on `pool` with default backoff. */
  readonly queue?: JobQueue;
  readonly workerId?: string;
  readonly pollIntervalMs?: number;
  readonly leaseMs?: number;
  readonly concurrency?: number;
  readonly stabilityWindowMs?: number;
  /** Per-source windows and expected-series rules (config `completeness`); absent: the one window. */
  readonly completeness?: CompletenessConfig;
  readonly logger?: Logger;
}

export interface RunUntilIdleResult {
  /** Jobs this call ran to an outcome (succeeded, retried or failed). */
  readonly processed: number;
  /** False when the timeout passed with work still pending. */
  readonly idle: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

export class JobWorker {
  readonly workerId: string;
  readonly #pool: pg.Pool;
  readonly #queue: JobQueue;
  readonly #handler: JobHandler;
  readonly #pollIntervalMs: number;
  readonly #leaseMs: number;
  readonly #concurrency: number;
  readonly #stabilityWindowMs: number;
  readonly #completeness: CompletenessPolicy;
  readonly #log: Logger;
  readonly #inFlight = new Map<number, { done: Promise<void>; abort: AbortController }>();
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #deadWorkersChecked = false;
  #startedAt = 0;

  constructor(options: JobWorkerOptions) {
    this.#pool = options.pool;
    this.#queue = options.queue ?? new JobQueue(options.pool);
    this.#handler = options.handler;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
    this.#stabilityWindowMs = options.stabilityWindowMs ?? DEFAULT_STABILITY_WINDOW_MS;
    this.#completeness = {
      stabilityWindowMs: this.#stabilityWindowMs,
      ...(options.completeness ? { completeness: options.completeness } : {}),
    };
    this.#log = options.logger ?? childLogger('job-worker', { workerId: this.workerId });
  }

  get running(): boolean {
    return this.#running;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#startedAt = Date.now();
    this.#log.info('worker started', { concurrency: this.#concurrency, leaseMs: this.#leaseMs });
    this.#schedule(0);
  }

  /**
   * Stop claiming and wait for in-flight jobs to finish (drain). With `abort`, their handlers are
   * signalled to stop first; an aborted job is recorded as failed with its handler's error code.
   * Idempotent.
   */
  async stop(options: { abort?: boolean } = {}): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (options.abort) for (const f of this.#inFlight.values()) f.abort.abort();
    await this.#ticking;
    await Promise.allSettled([...this.#inFlight.values()].map((f) => f.done));
  }

  /**
   * For tests and the demo: promote, claim and run jobs one at a time until no study is receiving or
   * queued and no job is queued or running, or until `timeoutMs` passes. Do not combine with start().
   */
  async runUntilIdle(options: { timeoutMs?: number } = {}): Promise<RunUntilIdleResult> {
    const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_RUN_UNTIL_IDLE_TIMEOUT_MS);
    let processed = 0;
    while (Date.now() < deadline) {
      await promoteStableStudies(this.#pool, this.#completeness, this.#queue);
      const job = await this.#queue.claimNext(this.workerId, this.#leaseMs);
      if (job) {
        await this.#run(job, new AbortController());
        processed++;
        continue;
      }
      const { rows } = await this.#pool.query<{ studies: number; jobs: number }>(COUNT_PENDING_WORK);
      const pending = rows[0];
      if (!pending || pending.studies + pending.jobs === 0) return { processed, idle: true };
      await sleep(Math.min(this.#pollIntervalMs, deadline - Date.now()));
    }
    return { processed, idle: false };
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#ticking = this.#tick().finally(() => {
        this.#ticking = undefined;
        this.#schedule(this.#pollIntervalMs);
      });
    }, delayMs);
  }

  async #tick(): Promise<void> {
    try {
      // Once, before the first claim: jobs a killed predecessor on this host left running.
      if (!this.#deadWorkersChecked) {
        await this.#queue.expireLeasesOfDeadWorkers((id) => isDeadLocalWorker(id));
        this.#deadWorkersChecked = true;
      }
      // Quiet only counts while we listen: senders could not reach a gateway that was down, so a
      // study whose upload a crash interrupted is not complete just because the window passed during
      // the downtime. Its sender's retry gets one window after the start (crash trials, issue 9).
      // With per-source windows (config completeness) the same rule is applied per study: its quiet
      // time is counted from the start at the earliest (completeness.ts `listeningSince`).
      if (this.#completeness.completeness)
        await promoteStableStudies(this.#pool, { ...this.#completeness, listeningSince: this.#startedAt }, this.#queue);
      else if (Date.now() - this.#startedAt >= this.#stabilityWindowMs) {
        await promoteStableStudies(this.#pool, this.#completeness, this.#queue);
      }
      while (this.#running && this.#inFlight.size < this.#concurrency) {
        const job = await this.#queue.claimNext(this.workerId, this.#leaseMs);
        if (!job) break;
        const abort = new AbortController();
        const done = this.#run(job, abort).finally(() => {
          this.#inFlight.delete(job.id);
          // A slot freed: look for the next job now rather than after a full poll interval.
          if (this.#running && !this.#ticking) this.#schedule(0);
        });
        this.#inFlight.set(job.id, { done, abort });
      }
    } catch (err: unknown) {
      this.#log.warn('worker poll failed', { errorCode: errorCodeOf(err), error: normalizeErrorString(err) });
    }
  }

  /** Run one claimed job to an outcome. Never throws: a lost DB leaves the lease to expire. */
  async #run(job: Job, abort: AbortController): Promise<void> {
    const log = this.#log.child({ jobId: job.id, kind: job.kind, studyInstanceUid: job.studyInstanceUid });
    const renew = setInterval(
      () => {
        this.#queue.extendLease(job.id, this.workerId, this.#leaseMs).then(
          (held) => {
            if (!held) {
              log.warn('job lease lost, aborting handler');
              abort.abort();
            }
          },
          (err: unknown) => log.warn('job lease renewal failed', { error: normalizeErrorString(err) }),
        );
      },
      Math.max(10, Math.floor(this.#leaseMs / 3)),
    );
    const progress: JobProgress = {
      described: async () => {
        if (!(await this.#queue.reportDescribed(job.id, this.workerId))) log.warn('job lease lost before described');
      },
    };
    const started = Date.now();
    try {
      let result: unknown;
      try {
        result = await this.#handler(job, abort.signal, progress);
      } catch (err: unknown) {
        clearInterval(renew);
        const code = errorCodeOf(err);
        log.warn('job handler failed', { errorCode: code, durationMs: Date.now() - started });
        await this.#queue.fail(job.id, code, normalizeErrorString(err), this.workerId);
        return;
      }
      clearInterval(renew);
      await this.#queue.complete(job.id, result ?? null, this.workerId);
      log.info('job handler finished', { durationMs: Date.now() - started });
    } catch (err: unknown) {
      log.error('could not record job outcome', { errorCode: errorCodeOf(err), error: normalizeErrorString(err) });
    } finally {
      clearInterval(renew);
    }
  }
}
