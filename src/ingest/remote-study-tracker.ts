import type pg from 'pg';
import { type Queryable, withTransaction } from '../db/pool.js';
import type { ErrorCode } from '../errors.js';

/**
 * The QIDO-RS poller's memory (PS3.18 §10.6 Search, §10.4 Retrieve): which remote studies were seen
 * and which were already retrieved, so a poll does not fetch the same study again, and how often a
 * failing one was tried, so it is not retried without limit (issue 9). Matches the CHECK on
 * remote_studies.state (migrations 0001, 0007).
 */
export const RemoteStudyState = {
  /** Listed by a QIDO-RS search; not yet retrieved. */
  Seen: 'seen',
  /** All instances retrieved with WADO-RS and stored. */
  Retrieved: 'retrieved',
  /** The last retrieve failed; `error_code` says why; retried once `next_attempt_at` has passed. */
  Failed: 'failed',
  /**
   * `maxRetrieveAttempts` retrieves failed in a row: not retried until the PACS lists a different
   * number of instances for the study (NumberOfStudyRelatedInstances) or an operator reopens it.
   */
  GivenUp: 'given-up',
} as const;
export type RemoteStudyState = (typeof RemoteStudyState)[keyof typeof RemoteStudyState];

/** Why a listed study is, or is not, retrieved in this poll. Closed set. */
export const RetrieveDecision = {
  /** New, seen, reopened, or failed with its backoff elapsed: retrieve now. */
  Attempt: 'attempt',
  /** Already retrieved. */
  Retrieved: 'retrieved',
  /** Failed; the backoff before the next attempt has not elapsed. */
  Backoff: 'backoff',
  /** Given up; nothing about the study changed since. */
  GivenUp: 'given-up',
} as const;
export type RetrieveDecision = (typeof RetrieveDecision)[keyof typeof RetrieveDecision];

export interface RetrieveGate {
  readonly decision: RetrieveDecision;
  /** Number of the attempt about to be made (1-based) when `decision` is attempt; else attempts so far. */
  readonly attempt: number;
  /** True when a failed or given-up study was reopened: its instance count changed, or an operator reopened it. */
  readonly reopened: boolean;
  /**
   * NumberOfStudyRelatedInstances recorded when the study was last retrieved or checked (null: not
   * reported). A retrieved study the PACS now lists with another count is checked for late series.
   */
  readonly knownInstanceCount: number | null;
}

/** Retry policy of one node: attempt n (1-based) failing waits min(maxMs, initialMs · factor^(n-1)). */
export interface RetrievePolicy {
  readonly maxAttempts: number;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number; readonly factor: number };
}

export interface RetrieveFailure {
  readonly code: ErrorCode;
  readonly message: string;
  /** SOP Instance UIDs that were not stored (UIDs only). */
  readonly failedInstances?: readonly string[];
  /** NumberOfStudyRelatedInstances from the QIDO answer, or null when the PACS does not report it. */
  readonly remoteInstanceCount?: number | null;
}

export interface FailureRecorded {
  readonly state: typeof RemoteStudyState.Failed | typeof RemoteStudyState.GivenUp;
  readonly attempts: number;
  readonly nextAttemptAt: Date | null;
}

export interface RemoteStudy {
  readonly remoteNode: string;
  readonly studyInstanceUid: string;
  readonly state: RemoteStudyState;
  readonly firstSeenAt: Date;
  readonly lastSeenAt: Date;
  readonly attempts: number;
  readonly errorCode: ErrorCode | null;
  readonly lastError: string | null;
  readonly nextAttemptAt: Date | null;
  readonly remoteInstanceCount: number | null;
  readonly failedInstances: readonly string[];
}

/**
 * Work that commits or rolls back with a retrieve's tracker update (issue 12: the remote-retrieve
 * audit event is written in the same transaction as the state change it records, STYLE §2.6). It
 * gets the transaction's client (undefined from a tracker without a database, as in tests) and
 * what the update recorded; if it throws, the update is rolled back and the error propagates.
 */
export type InSameTransaction<T = void> = (q: Queryable | undefined, recorded: T) => Promise<void>;

/** The poller's view; the poller owns no SQL. */
export interface RemoteStudyTracker {
  /** Record that a search listed the study and say whether to retrieve it now. */
  observe(node: string, studyUid: string, remoteInstanceCount: number | null): Promise<RetrieveGate>;
  markRetrieved(
    node: string,
    studyUid: string,
    remoteInstanceCount?: number | null,
    then?: InSameTransaction,
  ): Promise<void>;
  /**
   * A retrieved study was compared with the PACS and nothing was missing (the count changed only by
   * our own exported objects, say): remember the count, so the next poll does not compare again.
   */
  markChecked(node: string, studyUid: string, remoteInstanceCount: number | null): Promise<void>;
  /** Count a failed attempt; with a policy, schedule the next one or give up after the last. */
  markFailed(
    node: string,
    studyUid: string,
    code: ErrorCode,
    message: string,
    failure?: Omit<RetrieveFailure, 'code' | 'message'>,
    policy?: RetrievePolicy,
    then?: InSameTransaction<FailureRecorded>,
  ): Promise<FailureRecorded>;
}

export const IS_RETRIEVED = `SELECT 1 FROM remote_studies WHERE remote_node = $1 AND study_instance_uid = $2 AND state = 'retrieved'`;

/** Seeing a study again never downgrades 'retrieved' or 'failed'; it only refreshes last_seen_at. */
export const MARK_SEEN = `
INSERT INTO remote_studies (remote_node, study_instance_uid) VALUES ($1, $2)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET last_seen_at = now()`;

/**
 * A failed or given-up study is reopened (attempts start again) when the PACS now lists a different
 * number of instances for it than at the last attempt: something changed, so a retry may succeed.
 */
const CHANGED = `(remote_studies.state IN ('failed', 'given-up') AND $3::integer IS NOT NULL
    AND remote_studies.remote_instance_count IS DISTINCT FROM $3::integer)`;

/** Upsert on sight; `due` tells whether a failed study's backoff has elapsed. */
export const OBSERVE = `
INSERT INTO remote_studies (remote_node, study_instance_uid) VALUES ($1, $2)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET
  last_seen_at = now(),
  state = CASE WHEN ${CHANGED} THEN 'seen' ELSE remote_studies.state END,
  attempts = CASE WHEN ${CHANGED} THEN 0 ELSE remote_studies.attempts END,
  next_attempt_at = CASE WHEN ${CHANGED} THEN NULL ELSE remote_studies.next_attempt_at END
RETURNING state, attempts, (next_attempt_at IS NULL OR next_attempt_at <= now()) AS due,
  (state = 'seen' AND attempts = 0 AND error_code IS NOT NULL) AS reopened, remote_instance_count`;

/** A retrieved study lacks nothing the PACS lists: record the count the comparison was made at. */
export const MARK_CHECKED = `
UPDATE remote_studies SET remote_instance_count = $3, last_seen_at = now()
WHERE remote_node = $1 AND study_instance_uid = $2 AND state = 'retrieved'`;

export const MARK_RETRIEVED = `
INSERT INTO remote_studies (remote_node, study_instance_uid, state, attempts, remote_instance_count)
VALUES ($1, $2, 'retrieved', 1, $3)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET
  state = 'retrieved', attempts = remote_studies.attempts + 1, error_code = NULL, last_error = NULL,
  next_attempt_at = NULL, failed_instances = '{}', remote_instance_count = $3, last_seen_at = now()`;

/**
 * Backoff computed in SQL (STYLE §2.7, graphile failJobs): attempt n failing waits
 * min(maxMs, initialMs · factor^(n-1)); the attempt that reaches maxAttempts gives up instead.
 * $5 maxAttempts, $8 initialMs, $9 factor, $10 maxMs.
 */
export const MARK_FAILED = `
INSERT INTO remote_studies
  (remote_node, study_instance_uid, state, attempts, error_code, last_error, failed_instances,
   remote_instance_count, next_attempt_at)
VALUES ($1, $2, CASE WHEN 1 >= $5::integer THEN 'given-up' ELSE 'failed' END, 1, $3, $4, $6::text[], $7,
  CASE WHEN 1 >= $5::integer THEN NULL ELSE now() + least($10::float8, $8::float8) * interval '1 millisecond' END)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET
  attempts = remote_studies.attempts + 1,
  state = CASE WHEN remote_studies.attempts + 1 >= $5::integer THEN 'given-up' ELSE 'failed' END,
  error_code = $3, last_error = $4, failed_instances = $6::text[], remote_instance_count = $7,
  next_attempt_at = CASE WHEN remote_studies.attempts + 1 >= $5::integer THEN NULL
    ELSE now() + least($10::float8, $8::float8 * power($9::float8, remote_studies.attempts)) * interval '1 millisecond' END,
  last_seen_at = now()
RETURNING state, attempts, next_attempt_at`;

/** Operator reopen: the next poll retrieves the study again, with a fresh attempt budget. */
export const REOPEN = `
UPDATE remote_studies SET state = 'seen', attempts = 0, next_attempt_at = NULL
WHERE remote_node = $1 AND study_instance_uid = $2 AND state IN ('failed', 'given-up')`;

export const GET_REMOTE_STUDY = 'SELECT * FROM remote_studies WHERE remote_node = $1 AND study_instance_uid = $2';

/** For operators: studies in one state (or all), the most recently seen first. */
export const LIST_REMOTE_STUDIES = `
SELECT * FROM remote_studies WHERE ($1::text IS NULL OR state = $1) ORDER BY last_seen_at DESC, study_instance_uid
LIMIT $2`;

interface RemoteStudyRow {
  remote_node: string;
  study_instance_uid: string;
  state: RemoteStudyState;
  first_seen_at: Date;
  last_seen_at: Date;
  attempts: number;
  error_code: ErrorCode | null;
  last_error: string | null;
  next_attempt_at: Date | null;
  remote_instance_count: number | null;
  failed_instances: string[] | null;
}

function toRemoteStudy(r: RemoteStudyRow): RemoteStudy {
  return {
    remoteNode: r.remote_node,
    studyInstanceUid: r.study_instance_uid,
    state: r.state,
    firstSeenAt: r.first_seen_at,
    lastSeenAt: r.last_seen_at,
    attempts: r.attempts,
    errorCode: r.error_code,
    lastError: r.last_error,
    nextAttemptAt: r.next_attempt_at,
    remoteInstanceCount: r.remote_instance_count,
    failedInstances: r.failed_instances ?? [],
  };
}

/** No policy: count the failure, retry at the next poll, never give up (the pre-issue-9 behaviour). */
const UNBOUNDED: RetrievePolicy = { maxAttempts: 2 ** 31 - 1, backoff: { initialMs: 0, maxMs: 0, factor: 1 } };

export class PgRemoteStudyTracker implements RemoteStudyTracker {
  readonly #q: Queryable;

  /** With a pool, updates that carry work (`then`) get their own transaction; with a client, the caller's. */
  constructor(q: Queryable) {
    this.#q = q;
  }

  #inTransaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    const q = this.#q;
    return 'release' in q ? fn(q) : withTransaction(q as pg.Pool, fn);
  }

  async isRetrieved(node: string, studyUid: string): Promise<boolean> {
    const { rowCount } = await this.#q.query(IS_RETRIEVED, [node, studyUid]);
    return (rowCount ?? 0) > 0;
  }

  async markSeen(node: string, studyUid: string): Promise<void> {
    await this.#q.query(MARK_SEEN, [node, studyUid]);
  }

  async observe(node: string, studyUid: string, remoteInstanceCount: number | null): Promise<RetrieveGate> {
    const { rows } = await this.#q.query<{
      state: RemoteStudyState;
      attempts: number;
      due: boolean;
      reopened: boolean;
      remote_instance_count: number | null;
    }>(OBSERVE, [node, studyUid, remoteInstanceCount]);
    const r = rows[0];
    if (!r) throw new Error('remote_studies upsert returned no row');
    const decision =
      r.state === RemoteStudyState.Retrieved
        ? RetrieveDecision.Retrieved
        : r.state === RemoteStudyState.GivenUp
          ? RetrieveDecision.GivenUp
          : r.state === RemoteStudyState.Failed && !r.due
            ? RetrieveDecision.Backoff
            : RetrieveDecision.Attempt;
    return {
      decision,
      attempt: decision === RetrieveDecision.Attempt ? r.attempts + 1 : r.attempts,
      reopened: r.reopened,
      knownInstanceCount: r.remote_instance_count,
    };
  }

  async markChecked(node: string, studyUid: string, remoteInstanceCount: number | null): Promise<void> {
    await this.#q.query(MARK_CHECKED, [node, studyUid, remoteInstanceCount]);
  }

  async markRetrieved(
    node: string,
    studyUid: string,
    remoteInstanceCount: number | null = null,
    then?: InSameTransaction,
  ): Promise<void> {
    if (!then) {
      await this.#q.query(MARK_RETRIEVED, [node, studyUid, remoteInstanceCount]);
      return;
    }
    await this.#inTransaction(async (q) => {
      await q.query(MARK_RETRIEVED, [node, studyUid, remoteInstanceCount]);
      await then(q, undefined);
    });
  }

  async markFailed(
    node: string,
    studyUid: string,
    code: ErrorCode,
    message: string,
    failure: Omit<RetrieveFailure, 'code' | 'message'> = {},
    policy: RetrievePolicy = UNBOUNDED,
    then?: InSameTransaction<FailureRecorded>,
  ): Promise<FailureRecorded> {
    if (!then) return this.#markFailed(this.#q, node, studyUid, code, message, failure, policy);
    return this.#inTransaction(async (q) => {
      const recorded = await this.#markFailed(q, node, studyUid, code, message, failure, policy);
      await then(q, recorded);
      return recorded;
    });
  }

  async #markFailed(
    q: Queryable,
    node: string,
    studyUid: string,
    code: ErrorCode,
    message: string,
    failure: Omit<RetrieveFailure, 'code' | 'message'>,
    policy: RetrievePolicy,
  ): Promise<FailureRecorded> {
    const { rows } = await q.query<{
      state: FailureRecorded['state'];
      attempts: number;
      next_attempt_at: Date | null;
    }>(MARK_FAILED, [
      node,
      studyUid,
      code,
      message.slice(0, 2000),
      policy.maxAttempts,
      [...(failure.failedInstances ?? [])],
      failure.remoteInstanceCount ?? null,
      policy.backoff.initialMs,
      policy.backoff.factor,
      policy.backoff.maxMs,
    ]);
    const r = rows[0];
    if (!r) throw new Error('remote_studies update returned no row');
    return { state: r.state, attempts: r.attempts, nextAttemptAt: r.next_attempt_at };
  }

  /** Operator action: retry a failed or given-up study at the next poll; false when it was neither. */
  async reopen(node: string, studyUid: string): Promise<boolean> {
    const { rowCount } = await this.#q.query(REOPEN, [node, studyUid]);
    return (rowCount ?? 0) > 0;
  }

  async get(node: string, studyUid: string): Promise<RemoteStudy | null> {
    const { rows } = await this.#q.query<RemoteStudyRow>(GET_REMOTE_STUDY, [node, studyUid]);
    const r = rows[0];
    return r ? toRemoteStudy(r) : null;
  }

  async list(state: RemoteStudyState | undefined, limit = 100): Promise<RemoteStudy[]> {
    const { rows } = await this.#q.query<RemoteStudyRow>(LIST_REMOTE_STUDIES, [state ?? null, limit]);
    return rows.map(toRemoteStudy);
  }
}
