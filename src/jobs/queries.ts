/**
 * Job-queue SQL as named constants (STYLE rule 6; medplum `queue/queries.ts`), shared verbatim by
 * job-queue.ts, worker.ts and the plan test. Only job-queue.ts writes `jobs`; the study rows these
 * statements read are written by src/ingest/study-lifecycle.ts alone (issue 8: one owner per table).
 * Durations are passed in milliseconds as double precision and turned into intervals in SQL, so
 * every clock comparison uses the database clock (`now()`), never the caller's.
 */

/** $1 kind, $2 study, $3 payload, $4 priority, $5 max_attempts, $6 delay ms. Null row = an active job exists. */
export const ENQUEUE_JOB = `
INSERT INTO jobs (kind, study_instance_uid, payload, priority, max_attempts, run_at)
VALUES ($1, $2, $3::jsonb, $4, $5, now() + $6::double precision * interval '1 millisecond')
ON CONFLICT (kind, study_instance_uid) WHERE state IN ('queued', 'running') DO NOTHING
RETURNING *`;

/**
 * A worker that stopped renewing its lease (crash, kill -9) left its job 'running'. Put it back in
 * the queue, or fail it with `timeout` when it has used all its attempts; job-queue.ts moves each
 * returned study in the same transaction.
 */
export const RECLAIM_EXPIRED_LEASES = `
UPDATE jobs SET
  state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
  error_code = 'timeout',
  last_error = 'lease expired: worker stopped renewing it',
  locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE state = 'running' AND locked_until < now()
RETURNING study_instance_uid, state`;

/** Holders of running jobs, for the dead-worker check at worker start (few rows: one per running job). */
export const LIST_LEASE_HOLDERS = `
SELECT DISTINCT locked_by FROM jobs WHERE state = 'running' AND locked_by IS NOT NULL`;

/**
 * End the leases of holders known to be dead ($1 text[]), so that RECLAIM_EXPIRED_LEASES returns
 * their jobs at the next claim instead of after the rest of the lease.
 */
export const EXPIRE_LEASES_OF = `
UPDATE jobs SET locked_until = now() - interval '1 millisecond', updated_at = now()
WHERE state = 'running' AND locked_by = ANY($1::text[])
RETURNING id`;

/**
 * Claim the next due job (pg-boss `fetchNextJob`): SKIP LOCKED lets concurrent claimers pass over
 * each other's candidate rows instead of waiting or double-claiming. Jobs of a study that is
 * receiving new instances again (or is stable but not yet re-queued) wait until the stability
 * sweep re-queues it.
 * $1 worker id, $2 lease ms.
 */
export const CLAIM_NEXT_JOB = `
UPDATE jobs SET
  state = 'running', attempts = attempts + 1, locked_by = $1,
  locked_until = now() + $2::double precision * interval '1 millisecond', updated_at = now()
WHERE id = (
  SELECT j.id FROM jobs j
  WHERE j.state = 'queued' AND j.run_at <= now()
    AND NOT EXISTS (
      SELECT 1 FROM studies s
      WHERE s.study_instance_uid = j.study_instance_uid AND s.state IN ('receiving', 'stable'))
  ORDER BY j.priority, j.run_at
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING *`;

/** $1 id, $2 worker id, $3 lease ms. No row = the lease was lost (reclaimed or finished). */
export const EXTEND_LEASE = `
UPDATE jobs SET locked_until = now() + $3::double precision * interval '1 millisecond', updated_at = now()
WHERE id = $1 AND state = 'running' AND locked_by = $2
RETURNING locked_until`;

/** $1 id, $2 result, $3 worker id or null (null = any holder). */
export const COMPLETE_JOB = `
UPDATE jobs SET
  state = 'succeeded', result = $2::jsonb, error_code = NULL, last_error = NULL,
  locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE id = $1 AND state = 'running' AND ($3::text IS NULL OR locked_by = $3)
RETURNING *`;

/**
 * Retry with exponential backoff computed in SQL (pg-boss `failJobsBody`, graphile `failJobs.ts`):
 * delay = min(base · 2^(attempts-1), max). `attempts` already counts this attempt (set at claim).
 * $1 id, $2 error code, $3 retryable, $4 message, $5 base ms, $6 max ms, $7 worker id or null.
 */
export const FAIL_JOB = `
UPDATE jobs SET
  state = CASE WHEN $3::boolean AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
  run_at = CASE WHEN $3::boolean AND attempts < max_attempts
    THEN now() + least($5::double precision * power(2, greatest(attempts - 1, 0)), $6::double precision)
               * interval '1 millisecond'
    ELSE run_at END,
  error_code = $2, last_error = $4, locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE id = $1 AND state = 'running' AND ($7::text IS NULL OR locked_by = $7)
RETURNING *`;

/** Only a job that has not started can be cancelled. $1 id. */
export const CANCEL_JOB = `
UPDATE jobs SET state = 'cancelled', updated_at = now()
WHERE id = $1 AND state = 'queued'
RETURNING *`;

export const GET_JOB = 'SELECT * FROM jobs WHERE id = $1';

/** $1 state, $2 kind, $3 study (each null = any), $4 limit. Newest first. */
export const LIST_JOBS = `
SELECT * FROM jobs
WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR study_instance_uid = $3)
ORDER BY id DESC
LIMIT $4`;

/**
 * The running job `$1` if worker `$2` still holds it, locked for the rest of the transaction, so a
 * study transition reported by the handler commits only while the lease is held.
 */
export const LOCK_HELD_JOB = `
SELECT study_instance_uid FROM jobs WHERE id = $1 AND state = 'running' AND locked_by = $2 FOR UPDATE`;

/**
 * A describe job running on the study: the stability sweep waits for it to end before queuing the
 * next one (that job saw an incomplete study). $1 study.
 */
export const HAS_RUNNING_DESCRIBE_JOB = `
SELECT 1 FROM jobs WHERE kind = 'describe-study' AND study_instance_uid = $1 AND state = 'running'`;

/** Work that runUntilIdle waits for. */
export const COUNT_PENDING_WORK = `
SELECT
  (SELECT count(*) FROM studies WHERE state IN ('receiving', 'stable', 'queued'))::int AS studies,
  (SELECT count(*) FROM jobs WHERE state IN ('queued', 'running'))::int AS jobs`;
