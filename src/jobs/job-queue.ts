import type pg from 'pg';
import { type Queryable, withTransaction } from '../db/pool.js';
import { type ErrorCode, RETRYABLE_CODES } from '../errors.js';
import { studyClaimed, studyDescribed, studyExported, studyJobFailed, studyQueued } from '../ingest/study-lifecycle.js';
import { childLogger, type Logger } from '../logger.js';
import {
  CANCEL_JOB,
  CLAIM_NEXT_JOB,
  COMPLETE_JOB,
  ENQUEUE_JOB,
  EXPIRE_LEASES_OF,
  EXTEND_LEASE,
  FAIL_JOB,
  GET_JOB,
  LIST_JOBS,
  LIST_LEASE_HOLDERS,
  LOCK_HELD_JOB,
  RECLAIM_EXPIRED_LEASES,
} from './queries.js';
import {
  type EnqueueRequest,
  type Job,
  type JobKind,
  type JobListFilter,
  type JobPayloads,
  JobState,
} from './types.js';

/**
 * PostgreSQL job queue (STYLE §2.7; pg-boss verbs send/fetch/complete/fail), the one writer of the
 * `jobs` table. Every job transition moves its study's lifecycle state in the same transaction
 * (through src/ingest/study-lifecycle.ts, the owner of `studies`), so `studies.state` never
 * disagrees with the job that works on it:
 * enqueue → queued, claim → processing, reportDescribed → described, complete → exported,
 * fail → queued (retry) or failed, cancel → failed. A study that went back to 'receiving' meanwhile
 * (a new instance) is left there.
 */

export const DEFAULT_MAX_ATTEMPTS = 5;
/** First retry after 10 s, then 20 s, 40 s… (delay = base · 2^(attempts-1)). */
export const DEFAULT_BACKOFF_BASE_MS = 10_000;
export const DEFAULT_BACKOFF_MAX_MS = 60 * 60_000;
/** last_error is for humans; keep rows small. */
const MAX_ERROR_LENGTH = 2000;

export interface JobQueueOptions {
  /** Attempts of a job enqueued without its own `maxAttempts` (config `jobs.maxAttempts`). */
  readonly maxAttempts?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  readonly logger?: Logger;
}

interface JobRow {
  id: string | number;
  kind: JobKind;
  state: JobState;
  study_instance_uid: string;
  payload: unknown;
  priority: number;
  run_at: Date;
  attempts: number;
  max_attempts: number;
  locked_by: string | null;
  locked_until: Date | null;
  error_code: ErrorCode | null;
  last_error: string | null;
  result: unknown;
  created_at: Date;
  updated_at: Date;
}

export function toJob(r: JobRow): Job {
  return {
    id: Number(r.id),
    kind: r.kind,
    state: r.state,
    studyInstanceUid: r.study_instance_uid,
    payload: r.payload as JobPayloads[JobKind],
    priority: r.priority,
    runAt: r.run_at,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    lockedBy: r.locked_by,
    lockedUntil: r.locked_until,
    errorCode: r.error_code,
    lastError: r.last_error,
    result: r.result,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export class JobQueue {
  readonly #pool: pg.Pool;
  readonly #maxAttempts: number;
  readonly #backoffBaseMs: number;
  readonly #backoffMaxMs: number;
  readonly #log: Logger;

  constructor(pool: pg.Pool, options: JobQueueOptions = {}) {
    this.#pool = pool;
    this.#maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.#backoffBaseMs = options.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS;
    this.#backoffMaxMs = options.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    this.#log = options.logger ?? childLogger('job-queue');
  }

  /**
   * Add a job inside the caller's transaction (pass the PoolClient) or on its own (pass the pool).
   * Returns null when the study already has a queued or running job of this kind (one live job per
   * (kind, study), enforced by a partial unique index). A created job moves its study to 'queued'
   * (from receiving, stable, exported or failed: an operator may ask for a re-run).
   */
  async enqueue<K extends JobKind>(client: Queryable, req: EnqueueRequest<K>): Promise<Job<K> | null> {
    const { rows } = await client.query<JobRow>(ENQUEUE_JOB, [
      req.kind,
      req.studyInstanceUid,
      JSON.stringify(req.payload),
      req.priority ?? 0,
      req.maxAttempts ?? this.#maxAttempts,
      req.delayMs ?? 0,
    ]);
    const row = rows[0];
    if (!row) return null;
    await studyQueued(client, req.studyInstanceUid);
    const job = toJob(row) as Job<K>;
    this.#log.info('job enqueued', { jobId: job.id, kind: job.kind, studyInstanceUid: job.studyInstanceUid });
    return job;
  }

  /**
   * Claim the next due job for `workerId` with a lease of `leaseMs`; first returns jobs whose lease
   * expired to the queue (or fails them when no attempt is left). Null when nothing is due.
   */
  async claimNext(workerId: string, leaseMs: number): Promise<Job | null> {
    return withTransaction(this.#pool, async (client) => {
      const expired = await client.query<{ study_instance_uid: string; state: JobState }>(RECLAIM_EXPIRED_LEASES);
      for (const e of expired.rows) await studyJobFailed(client, e.study_instance_uid, e.state === JobState.Queued);
      const { rows } = await client.query<JobRow>(CLAIM_NEXT_JOB, [workerId, leaseMs]);
      const row = rows[0];
      if (!row) return null;
      await studyClaimed(client, row.study_instance_uid);
      const job = toJob(row);
      this.#log.info('job claimed', { jobId: job.id, kind: job.kind, workerId, attempt: job.attempts });
      return job;
    });
  }

  /**
   * A gateway killed with its job running (kill -9, OOM killer) leaves that job 'running' under its
   * lease, and a restarted gateway would wait the rest of it (config jobs.leaseMs, 10 minutes by
   * default) before the job runs again. `isDead` is asked about each current holder; the leases of
   * the dead ones end now, and the next claim reclaims their jobs (RECLAIM_EXPIRED_LEASES: the
   * attempt counts, so a study that kills its worker every time still runs out of attempts).
   * Returns the ids of the jobs whose lease ended.
   */
  async expireLeasesOfDeadWorkers(isDead: (workerId: string) => boolean): Promise<number[]> {
    const { rows } = await this.#pool.query<{ locked_by: string }>(LIST_LEASE_HOLDERS);
    const dead = rows.map((r) => r.locked_by).filter(isDead);
    if (dead.length === 0) return [];
    const res = await this.#pool.query<{ id: string }>(EXPIRE_LEASES_OF, [dead]);
    const ids = res.rows.map((r) => Number(r.id));
    this.#log.warn('leases of dead workers ended', { jobIds: ids, workers: dead });
    return ids;
  }

  /** Renew the lease of a long-running job. False when the worker no longer holds it. */
  async extendLease(id: number, workerId: string, leaseMs: number): Promise<boolean> {
    const { rowCount } = await this.#pool.query(EXTEND_LEASE, [id, workerId, leaseMs]);
    return (rowCount ?? 0) > 0;
  }

  /**
   * The handler of running job `id` reports that inference finished: its study moves to
   * 'described', only while `workerId` still holds the lease. False when it no longer does.
   */
  async reportDescribed(id: number, workerId: string): Promise<boolean> {
    return withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<{ study_instance_uid: string }>(LOCK_HELD_JOB, [id, workerId]);
      const row = rows[0];
      if (!row) return false;
      await studyDescribed(client, row.study_instance_uid);
      return true;
    });
  }

  /**
   * Mark a running job succeeded and its study 'exported' (unless the study went back to 'receiving').
   * Null when the job was not running (or, with `workerId`, not held by that worker).
   */
  async complete(id: number, result: unknown, workerId?: string): Promise<Job | null> {
    return withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<JobRow>(COMPLETE_JOB, [id, JSON.stringify(result ?? null), workerId ?? null]);
      const row = rows[0];
      if (!row) return null;
      await studyExported(client, row.study_instance_uid);
      this.#log.info('job succeeded', { jobId: id, attempt: row.attempts });
      return toJob(row);
    });
  }

  /**
   * Record a failure. A code in RETRYABLE_CODES with attempts left re-queues the job after an
   * exponential backoff computed in SQL; anything else fails it for good. Policy reads the code only.
   */
  async fail(id: number, code: ErrorCode, message: string, workerId?: string): Promise<Job | null> {
    const retryable = RETRYABLE_CODES.has(code);
    return withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<JobRow>(FAIL_JOB, [
        id,
        code,
        retryable,
        message.slice(0, MAX_ERROR_LENGTH),
        this.#backoffBaseMs,
        this.#backoffMaxMs,
        workerId ?? null,
      ]);
      const row = rows[0];
      if (!row) return null;
      await studyJobFailed(client, row.study_instance_uid, row.state === JobState.Queued);
      const job = toJob(row);
      if (job.state === JobState.Queued) {
        this.#log.warn('job failed, will retry', {
          jobId: id,
          errorCode: code,
          attempt: job.attempts,
          runAt: job.runAt,
        });
      } else {
        this.#log.error('job failed', { jobId: id, errorCode: code, attempt: job.attempts });
      }
      return job;
    });
  }

  /** Cancel a job that has not started. Null when it is not queued. */
  async cancel(id: number): Promise<Job | null> {
    return withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<JobRow>(CANCEL_JOB, [id]);
      const row = rows[0];
      if (!row) return null;
      await studyJobFailed(client, row.study_instance_uid, false);
      return toJob(row);
    });
  }

  async get(id: number): Promise<Job | null> {
    const { rows } = await this.#pool.query<JobRow>(GET_JOB, [id]);
    return rows[0] ? toJob(rows[0]) : null;
  }

  /** Newest first; default limit 100. */
  async list(filter: JobListFilter = {}): Promise<Job[]> {
    const { rows } = await this.#pool.query<JobRow>(LIST_JOBS, [
      filter.state ?? null,
      filter.kind ?? null,
      filter.studyInstanceUid ?? null,
      filter.limit ?? 100,
    ]);
    return rows.map(toJob);
  }
}
