import type { Queryable } from '../db/pool.js';

/**
 * The one owner of the `studies` table (issue 8: one lifecycle owner per table). Every statement
 * that changes a study row is in this file; everyone else calls these functions with the pool or
 * with the client of the transaction the change belongs to (the instance receipt, the job
 * transition), so a study's state commits or rolls back with the event that caused it.
 *
 * A study (PS3.3 C.7.2.1 General Study, keyed by Study Instance UID) moves through the states of
 * `StudyState` only along `STUDY_TRANSITIONS`. The same table is in the database
 * (`study_state_transitions`, migrations/0005_study_lifecycle.sql) and a trigger refuses any other
 * change of `studies.state`, so the rule holds for every writer, not only for this module;
 * test/integration/study-lifecycle.int.test.ts compares the two tables.
 */

/** Matches the CHECK on `studies.state` (migrations/0005_study_lifecycle.sql). */
export const StudyState = {
  /** Instances may still arrive. A study is created in this state; a new instance sends it back here. */
  Receiving: 'receiving',
  /**
   * No instance arrived for the stability window (src/jobs/study-stability.ts): the study counts as
   * complete. It waits here only while a describe job that started on the incomplete study still runs.
   */
  Stable: 'stable',
  /** A describe-study job waits for a worker. */
  Queued: 'queued',
  /** A worker holds the describe-study job (claimed under a lease). */
  Processing: 'processing',
  /** The model described the selected images; the draft is being built and sent. */
  Described: 'described',
  /** The draft SR went out and the job succeeded. */
  Exported: 'exported',
  /** The job failed permanently (or was cancelled). */
  Failed: 'failed',
  /**
   * Retention removed the study's received instances (src/ingest/retention.ts, migration 0009): the
   * rows stay, marked deleted; the audit trail records it ('study-deleted'). A new instance re-opens it.
   */
  Expunged: 'expunged',
} as const;
export type StudyState = (typeof StudyState)[keyof typeof StudyState];

/** Why a study changes state; each transition below names one. */
export const StudyEvent = {
  /** An instance was stored (src/ingest/instance-store.ts). */
  InstanceReceived: 'instance-received',
  /** The stability window elapsed with no new instance. */
  WindowElapsed: 'window-elapsed',
  /** A describe-study job was enqueued, or one already waits (stability sweep or operator). */
  JobQueued: 'job-queued',
  /** A worker claimed the job. */
  JobClaimed: 'job-claimed',
  /** The handler reported that inference finished. */
  Described: 'described',
  /** The job succeeded: the SR went out. */
  JobSucceeded: 'job-succeeded',
  /** A retryable failure with attempts left, or an expired lease: the job waits for a retry. */
  JobRetrying: 'job-retrying',
  /** A permanent failure, attempts exhausted, or the queued job was cancelled. */
  JobFailed: 'job-failed',
  /** A retention rule's age elapsed for an exported (or failed) study: its files were removed. */
  RetentionExpired: 'retention-expired',
} as const;
export type StudyEvent = (typeof StudyEvent)[keyof typeof StudyEvent];

/**
 * The transition table, a closed set. An UPDATE that leaves the state unchanged is not a
 * transition (a further instance of a receiving study). Anything not listed is refused by the
 * trigger `studies_state_transition_trg`.
 *
 * | from       | to         | event             |
 * |------------|------------|-------------------|
 * | receiving  | stable     | window-elapsed    |
 * | receiving  | queued     | job-queued (operator asked before the window elapsed) |
 * | stable     | queued     | job-queued        |
 * | queued     | processing | job-claimed       |
 * | queued     | failed     | job-failed (cancelled) |
 * | processing | described  | described         |
 * | processing | queued     | job-retrying      |
 * | processing | failed     | job-failed        |
 * | described  | exported   | job-succeeded     |
 * | described  | queued     | job-retrying      |
 * | described  | failed     | job-failed        |
 * | exported   | queued     | job-queued (operator re-run) |
 * | failed     | queued     | job-queued (operator re-run) |
 * | exported   | expunged   | retention-expired (migration 0009) |
 * | failed     | expunged   | retention-expired (a rule with failedAfterDays) |
 * | any but receiving | receiving | instance-received (from processing, described, exported, failed, expunged: version N+1) |
 */
export const STUDY_TRANSITIONS = [
  { from: 'receiving', to: 'stable', on: 'window-elapsed' },
  { from: 'receiving', to: 'queued', on: 'job-queued' },
  { from: 'stable', to: 'queued', on: 'job-queued' },
  { from: 'stable', to: 'receiving', on: 'instance-received' },
  { from: 'queued', to: 'processing', on: 'job-claimed' },
  { from: 'queued', to: 'failed', on: 'job-failed' },
  { from: 'queued', to: 'receiving', on: 'instance-received' },
  { from: 'processing', to: 'described', on: 'described' },
  { from: 'processing', to: 'queued', on: 'job-retrying' },
  { from: 'processing', to: 'failed', on: 'job-failed' },
  { from: 'processing', to: 'receiving', on: 'instance-received', newVersion: true },
  { from: 'described', to: 'exported', on: 'job-succeeded' },
  { from: 'described', to: 'queued', on: 'job-retrying' },
  { from: 'described', to: 'failed', on: 'job-failed' },
  { from: 'described', to: 'receiving', on: 'instance-received', newVersion: true },
  { from: 'exported', to: 'queued', on: 'job-queued' },
  { from: 'exported', to: 'receiving', on: 'instance-received', newVersion: true },
  { from: 'failed', to: 'queued', on: 'job-queued' },
  { from: 'failed', to: 'receiving', on: 'instance-received', newVersion: true },
  { from: 'exported', to: 'expunged', on: 'retention-expired' },
  { from: 'failed', to: 'expunged', on: 'retention-expired' },
  { from: 'expunged', to: 'receiving', on: 'instance-received', newVersion: true },
] as const satisfies readonly { from: StudyState; to: StudyState; on: StudyEvent; newVersion?: true }[];
export type StudyTransition = (typeof STUDY_TRANSITIONS)[number];

/**
 * States in which a describe job has claimed the study, so the current version's input set is fixed:
 * a new instance arriving in one of them opens version N+1 (the `newVersion` rows above; migration
 * 0019 marks the same rows in `study_state_transitions.new_version` and its trigger refuses any other
 * change of `studies.version`). The version-N+1 draft names the version-N draft in its Predecessor
 * Documents Sequence (PS3.3 C.17.2.1) and has its own SOP Instance UID (draft-policy.ts). A new
 * instance of a study no job has claimed yet (receiving, stable, queued) joins the current version.
 */
export const VERSION_OPENING_STATES: readonly StudyState[] = STUDY_TRANSITIONS.filter(
  (t) => 'newVersion' in t && t.newVersion,
).map((t) => t.from);

/** True when `from → to` is in the table (or no change at all). */
export function isStudyTransition(from: StudyState, to: StudyState): boolean {
  return from === to || STUDY_TRANSITIONS.some((t) => t.from === from && t.to === to);
}

/** The states an event moves a study out of, toward `to`. */
function sourcesOf(on: StudyEvent, to: StudyState): StudyState[] {
  return STUDY_TRANSITIONS.filter((t) => t.on === on && t.to === to).map((t) => t.from);
}

export interface Study {
  readonly studyInstanceUid: string;
  readonly state: StudyState;
  readonly firstReceivedAt: Date;
  readonly lastReceivedAt: Date;
  readonly instanceCount: number;
  readonly updatedAt: Date;
  /** Version of the result (migration 0019): 1, then +1 for each input set that arrived after a job claimed the study. */
  readonly version: number;
}

// ---- SQL (STYLE rule 6: named text shared with the tests) ----

export const SELECT_STUDY = 'SELECT * FROM studies WHERE study_instance_uid = $1';

/** Creates the study row on first sight (the instance row references it); counters move in RECORD_RECEIPT. */
export const ENSURE_STUDY = `
INSERT INTO studies (study_instance_uid) VALUES ($1) ON CONFLICT (study_instance_uid) DO NOTHING`;

/**
 * An instance of the study was stored (the one statement per receipt, issue 14). Whether $2 (its
 * SOP Instance UID) is one of our own exported objects (a PACS routing our draft back to us) is
 * asked in the same statement:
 * - a new instance re-opens the study: back to 'receiving' from any state, so a completed study
 *   (exported/failed) is described again once it is stable, and a queued job waits for that; out
 *   of one of $3 (VERSION_OPENING_STATES) it opens the next version;
 * - our own export is counted but is no new input: the study keeps its state, version and receipt
 *   time (and retention's updated_at), or it would open a version whose draft comes back again.
 * Returns the study's version and whether the instance was our own export.
 */
export const RECORD_RECEIPT = `
WITH own AS (SELECT EXISTS (SELECT 1 FROM sr_exports WHERE sop_instance_uid = $2) AS own_export)
UPDATE studies SET
  state = CASE WHEN own.own_export THEN state ELSE 'receiving' END,
  last_received_at = CASE WHEN own.own_export THEN last_received_at ELSE now() END,
  instance_count = instance_count + 1,
  version = CASE WHEN NOT own.own_export AND state = ANY($3::text[]) THEN version + 1 ELSE version END,
  updated_at = CASE WHEN own.own_export THEN updated_at ELSE now() END
FROM own
WHERE study_instance_uid = $1
RETURNING version, own.own_export`;

/** Move a study only from the expected states. $1 study, $2 new state, $3 from states. */
export const TRANSITION_STUDY = `
UPDATE studies SET state = $2, updated_at = now()
WHERE study_instance_uid = $1 AND state = ANY($3::text[])
RETURNING *`;

/**
 * Studies the stability sweep looks at: receiving and quiet for the window, or already stable
 * (waiting for a running describe job to end). Oldest first; studies_settling_idx covers it.
 * $1 window ms, $2 limit.
 */
export const SELECT_SETTLED_STUDIES = `
SELECT study_instance_uid FROM studies
WHERE state IN ('receiving', 'stable')
  AND (state = 'stable' OR last_received_at <= now() - $1::double precision * interval '1 millisecond')
ORDER BY last_received_at
LIMIT $2`;

/**
 * receiving → stable, re-checking under the row lock that nothing arrived since the scan; an
 * already stable study is returned as it is (locked, so no receipt changes it until we commit).
 * $1 study, $2 window ms.
 */
export const MARK_STABLE = `
UPDATE studies SET state = 'stable', updated_at = CASE WHEN state = 'stable' THEN updated_at ELSE now() END
WHERE study_instance_uid = $1
  AND (state = 'stable'
       OR (state = 'receiving' AND last_received_at <= now() - $2::double precision * interval '1 millisecond'))
RETURNING instance_count`;

/**
 * Completed studies retention may look at: in one of $1 states since at least $2 ms (updated_at is
 * when the study entered the state: nothing else updates a completed study). $3 at most, in UID
 * order after $4 (the previous page's last UID), so studies a rule keeps do not hold back the ones
 * after them; studies_retention_idx (migration 0009) narrows to the completed ones.
 */
export const SELECT_RETENTION_CANDIDATES = `
SELECT * FROM studies
WHERE state = ANY($1::text[]) AND updated_at <= now() - $2::double precision * interval '1 millisecond'
  AND study_instance_uid > $4
ORDER BY study_instance_uid
LIMIT $3`;

/** The study row, locked until the caller's transaction ends (retention re-checks state and age under it). */
export const SELECT_STUDY_FOR_UPDATE = 'SELECT * FROM studies WHERE study_instance_uid = $1 FOR UPDATE';

/** exported/failed → expunged; no live instance is left, so the count is 0. $1 study, $2 from states. */
export const EXPUNGE_STUDY = `
UPDATE studies SET state = 'expunged', instance_count = 0, updated_at = now()
WHERE study_instance_uid = $1 AND state = ANY($2::text[])
RETURNING *`;

interface StudyRow {
  study_instance_uid: string;
  state: StudyState;
  first_received_at: Date;
  last_received_at: Date;
  instance_count: number;
  updated_at: Date;
  version: number;
}

function toStudy(r: StudyRow): Study {
  return {
    studyInstanceUid: r.study_instance_uid,
    state: r.state,
    firstReceivedAt: r.first_received_at,
    lastReceivedAt: r.last_received_at,
    instanceCount: r.instance_count,
    updatedAt: r.updated_at,
    version: r.version,
  };
}

/**
 * Apply `event` to a study that is in one of the event's source states for `to`; a study in any
 * other state is left alone (a new instance moved it back to 'receiving' meanwhile, say) and the
 * result is null. The trigger checks the same table again in SQL.
 */
async function apply(q: Queryable, studyInstanceUid: string, on: StudyEvent, to: StudyState): Promise<Study | null> {
  const from = sourcesOf(on, to);
  if (from.length === 0) throw new Error(`no study transition to ${to} on ${on}`);
  const { rows } = await q.query<StudyRow>(TRANSITION_STUDY, [studyInstanceUid, to, from]);
  return rows[0] ? toStudy(rows[0]) : null;
}

// ---- Receipt (src/ingest/instance-store.ts, inside its transaction) ----

/** Create the study row if this is its first instance. Call before inserting the instance row. */
export async function ensureStudy(q: Queryable, studyInstanceUid: string): Promise<void> {
  await q.query(ENSURE_STUDY, [studyInstanceUid]);
}

/**
 * An instance was stored: count it, and (unless it is our own export) stamp the receipt time
 * (database clock) and send the study back to 'receiving' (RECORD_RECEIPT). Call last in the
 * receipt transaction: it locks the study row, so concurrent receipts of one study serialise only
 * for their commit.
 */
export async function recordReceipt(
  q: Queryable,
  studyInstanceUid: string,
  sopInstanceUid: string,
): Promise<{ version: number; ownExport: boolean }> {
  const { rows } = await q.query<{ version: number; own_export: boolean }>(RECORD_RECEIPT, [
    studyInstanceUid,
    sopInstanceUid,
    [...VERSION_OPENING_STATES],
  ]);
  return { version: rows[0]?.version ?? 1, ownExport: rows[0]?.own_export ?? false };
}

// ---- Stability (src/jobs/study-stability.ts) ----

/** Studies the sweep may promote, oldest first. */
export async function listSettledStudies(q: Queryable, windowMs: number, limit: number): Promise<string[]> {
  const { rows } = await q.query<{ study_instance_uid: string }>(SELECT_SETTLED_STUDIES, [windowMs, limit]);
  return rows.map((r) => r.study_instance_uid);
}

/**
 * receiving → stable when the window elapsed (or keep a stable study stable), under the row lock.
 * Returns the instance count, or null when the study is not settled (an instance arrived since).
 */
export async function markStable(q: Queryable, studyInstanceUid: string, windowMs: number): Promise<number | null> {
  const { rows } = await q.query<{ instance_count: number }>(MARK_STABLE, [studyInstanceUid, windowMs]);
  return rows[0]?.instance_count ?? null;
}

// ---- Job transitions (src/jobs/job-queue.ts, in the job's transaction) ----

/** A describe job waits for the study (created now, or already queued). */
export function studyQueued(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  return apply(q, studyInstanceUid, StudyEvent.JobQueued, StudyState.Queued);
}

export function studyClaimed(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  return apply(q, studyInstanceUid, StudyEvent.JobClaimed, StudyState.Processing);
}

/** Inference finished; the draft is being built and sent. */
export function studyDescribed(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  return apply(q, studyInstanceUid, StudyEvent.Described, StudyState.Described);
}

/**
 * The job succeeded: its SR went out. A handler that did not report `described` on the way (the
 * describe-study handler does) passes through it here, so the table has one path to 'exported'.
 */
export async function studyExported(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  await apply(q, studyInstanceUid, StudyEvent.Described, StudyState.Described);
  return apply(q, studyInstanceUid, StudyEvent.JobSucceeded, StudyState.Exported);
}

/** The job failed: back to 'queued' when it will be retried, else 'failed'. */
export function studyJobFailed(q: Queryable, studyInstanceUid: string, retrying: boolean): Promise<Study | null> {
  return retrying
    ? apply(q, studyInstanceUid, StudyEvent.JobRetrying, StudyState.Queued)
    : apply(q, studyInstanceUid, StudyEvent.JobFailed, StudyState.Failed);
}

// ---- Retention (src/ingest/retention.ts, in its deletion transaction) ----

/** Completed studies in `states` for at least `minAgeMs`, oldest first. */
export async function listRetentionCandidates(
  q: Queryable,
  states: readonly StudyState[],
  minAgeMs: number,
  limit: number,
  afterStudyInstanceUid = '',
): Promise<Study[]> {
  const { rows } = await q.query<StudyRow>(SELECT_RETENTION_CANDIDATES, [
    [...states],
    minAgeMs,
    limit,
    afterStudyInstanceUid,
  ]);
  return rows.map(toStudy);
}

/** The study, row-locked for the caller's transaction; null when it does not exist. */
export async function lockStudy(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  const { rows } = await q.query<StudyRow>(SELECT_STUDY_FOR_UPDATE, [studyInstanceUid]);
  return rows[0] ? toStudy(rows[0]) : null;
}

/** Retention removed the study's files: exported/failed → expunged. Null when it was in another state. */
export async function studyExpunged(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  const from = sourcesOf(StudyEvent.RetentionExpired, StudyState.Expunged);
  const { rows } = await q.query<StudyRow>(EXPUNGE_STUDY, [studyInstanceUid, from]);
  return rows[0] ? toStudy(rows[0]) : null;
}

// ---- Reads ----

export async function getStudy(q: Queryable, studyInstanceUid: string): Promise<Study | null> {
  const { rows } = await q.query<StudyRow>(SELECT_STUDY, [studyInstanceUid]);
  return rows[0] ? toStudy(rows[0]) : null;
}

/** The study's current version (1 when the study is unknown, as a first receipt would make it). */
export async function getStudyVersion(q: Queryable, studyInstanceUid: string): Promise<number> {
  return (await getStudy(q, studyInstanceUid))?.version ?? 1;
}

export async function getStudyState(q: Queryable, studyInstanceUid: string): Promise<StudyState | null> {
  return (await getStudy(q, studyInstanceUid))?.state ?? null;
}
