import type { ErrorCode } from '../errors.js';

/**
 * Job queue vocabulary (STYLE rule 1; medplum `queue/types.ts`). Matches the CHECK constraints on
 * `jobs.state` and `jobs.kind` in migrations/0001_init.sql.
 */

export const JobState = {
  /** Waiting for `run_at`; claimable. */
  Queued: 'queued',
  /** Claimed by a worker holding a lease (`locked_by`, `locked_until`). */
  Running: 'running',
  /** Handler returned; `result` holds its output. Terminal. */
  Succeeded: 'succeeded',
  /** Permanent error, or retryable error after `max_attempts`. Terminal. */
  Failed: 'failed',
  /** Withdrawn by an operator before it ran. Terminal. */
  Cancelled: 'cancelled',
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];

/**
 * The job lifecycle (issue 8): the only state changes the database allows (table
 * job_state_transitions and trigger jobs_state_transition_trg, migration 0015; the integration test
 * holds the two equal). `via` says which job-queue operation makes it. A job is inserted as
 * queued; succeeded, failed and cancelled are terminal: a re-run is a new job.
 */
export const JOB_TRANSITIONS = [
  { from: JobState.Queued, to: JobState.Running, via: 'claim' },
  { from: JobState.Queued, to: JobState.Cancelled, via: 'cancel' },
  { from: JobState.Running, to: JobState.Succeeded, via: 'complete' },
  { from: JobState.Running, to: JobState.Queued, via: 'retry or lease reclaim' },
  { from: JobState.Running, to: JobState.Failed, via: 'permanent failure, attempts used up, or lease reclaim' },
] as const satisfies readonly { from: JobState; to: JobState; via: string }[];

export function isJobTransition(from: JobState, to: JobState): boolean {
  return JOB_TRANSITIONS.some((t) => t.from === from && t.to === to);
}

export const JobKind = {
  /** Run the VLM over a complete study and write a draft SR (the whole RadScribe pipeline). */
  DescribeStudy: 'describe-study',
} as const;
export type JobKind = (typeof JobKind)[keyof typeof JobKind];

/** Why a describe-study job exists. */
export const DescribeStudyTrigger = {
  /** The study's stability window elapsed with no new instances (src/jobs/study-stability.ts). */
  Stable: 'stable',
  /** An operator or the CLI asked for it. */
  Manual: 'manual',
} as const;
export type DescribeStudyTrigger = (typeof DescribeStudyTrigger)[keyof typeof DescribeStudyTrigger];

export interface DescribeStudyPayload {
  readonly trigger: DescribeStudyTrigger;
  /** Instances the study held when the job was queued (a re-run after late instances sees more). */
  readonly instanceCount?: number;
}

/** Payload type per job kind (graphile-worker `Tasks` map). */
export interface JobPayloads {
  'describe-study': DescribeStudyPayload;
}

export interface Job<K extends JobKind = JobKind> {
  readonly id: number;
  readonly kind: K;
  readonly state: JobState;
  readonly studyInstanceUid: string;
  readonly payload: JobPayloads[K];
  /** Lower runs first. */
  readonly priority: number;
  readonly runAt: Date;
  /** Incremented when claimed, so it counts started attempts. */
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly lockedBy: string | null;
  readonly lockedUntil: Date | null;
  readonly errorCode: ErrorCode | null;
  readonly lastError: string | null;
  readonly result: unknown;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface EnqueueRequest<K extends JobKind = JobKind> {
  readonly kind: K;
  readonly studyInstanceUid: string;
  readonly payload: JobPayloads[K];
  /** Lower runs first; default 0. */
  readonly priority?: number;
  readonly maxAttempts?: number;
  /** Delay before the job becomes claimable. */
  readonly delayMs?: number;
}

export interface JobListFilter {
  readonly state?: JobState;
  readonly kind?: JobKind;
  readonly studyInstanceUid?: string;
  readonly limit?: number;
}

/**
 * What a running handler may report on the way; each call moves the job's study along the
 * lifecycle (src/ingest/study-lifecycle.ts) while the worker still holds the lease.
 */
export interface JobProgress {
  /** Inference finished; the draft is being built and sent (study → 'described'). */
  described(): Promise<void>;
}

/**
 * The worker's handler: return value is stored as `result` (JSON), and the study becomes
 * 'exported'. Must honour `signal`.
 */
export type JobHandler = (job: Job, signal: AbortSignal, progress: JobProgress) => Promise<unknown>;
