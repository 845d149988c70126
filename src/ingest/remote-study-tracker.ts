import type { Queryable } from '../db/pool.js';
import type { ErrorCode } from '../errors.js';

/**
 * The QIDO-RS poller's memory (PS3.18 §10.6 Search, §10.4 Retrieve): which remote studies were seen
 * and which were already retrieved, so a poll does not fetch the same study again. Matches the CHECK
 * on remote_studies.state.
 */
export const RemoteStudyState = {
  /** Listed by a QIDO-RS search; not yet retrieved. */
  Seen: 'seen',
  /** All instances retrieved with WADO-RS and stored. */
  Retrieved: 'retrieved',
  /** The last retrieve failed; `error_code` says why; the next poll may retry. */
  Failed: 'failed',
} as const;
export type RemoteStudyState = (typeof RemoteStudyState)[keyof typeof RemoteStudyState];

export interface RemoteStudy {
  readonly remoteNode: string;
  readonly studyInstanceUid: string;
  readonly state: RemoteStudyState;
  readonly firstSeenAt: Date;
  readonly lastSeenAt: Date;
  readonly attempts: number;
  readonly errorCode: ErrorCode | null;
  readonly lastError: string | null;
}

/** The poller's view; the poller owns no SQL. */
export interface RemoteStudyTracker {
  isRetrieved(node: string, studyUid: string): Promise<boolean>;
  markSeen(node: string, studyUid: string): Promise<void>;
  markRetrieved(node: string, studyUid: string): Promise<void>;
  markFailed(node: string, studyUid: string, code: ErrorCode, message: string): Promise<void>;
}

export const IS_RETRIEVED = `SELECT 1 FROM remote_studies WHERE remote_node = $1 AND study_instance_uid = $2 AND state = 'retrieved'`;

/** Seeing a study again never downgrades 'retrieved' or 'failed'; it only refreshes last_seen_at. */
export const MARK_SEEN = `
INSERT INTO remote_studies (remote_node, study_instance_uid) VALUES ($1, $2)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET last_seen_at = now()`;

export const MARK_RETRIEVED = `
INSERT INTO remote_studies (remote_node, study_instance_uid, state, attempts) VALUES ($1, $2, 'retrieved', 1)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET
  state = 'retrieved', attempts = remote_studies.attempts + 1, error_code = NULL, last_error = NULL,
  last_seen_at = now()`;

export const MARK_FAILED = `
INSERT INTO remote_studies (remote_node, study_instance_uid, state, attempts, error_code, last_error)
VALUES ($1, $2, 'failed', 1, $3, $4)
ON CONFLICT (remote_node, study_instance_uid) DO UPDATE SET
  state = 'failed', attempts = remote_studies.attempts + 1, error_code = $3, last_error = $4,
  last_seen_at = now()`;

export const GET_REMOTE_STUDY = 'SELECT * FROM remote_studies WHERE remote_node = $1 AND study_instance_uid = $2';

export class PgRemoteStudyTracker implements RemoteStudyTracker {
  readonly #q: Queryable;

  constructor(q: Queryable) {
    this.#q = q;
  }

  async isRetrieved(node: string, studyUid: string): Promise<boolean> {
    const { rowCount } = await this.#q.query(IS_RETRIEVED, [node, studyUid]);
    return (rowCount ?? 0) > 0;
  }

  async markSeen(node: string, studyUid: string): Promise<void> {
    await this.#q.query(MARK_SEEN, [node, studyUid]);
  }

  async markRetrieved(node: string, studyUid: string): Promise<void> {
    await this.#q.query(MARK_RETRIEVED, [node, studyUid]);
  }

  async markFailed(node: string, studyUid: string, code: ErrorCode, message: string): Promise<void> {
    await this.#q.query(MARK_FAILED, [node, studyUid, code, message.slice(0, 2000)]);
  }

  async get(node: string, studyUid: string): Promise<RemoteStudy | null> {
    const { rows } = await this.#q.query<{
      remote_node: string;
      study_instance_uid: string;
      state: RemoteStudyState;
      first_seen_at: Date;
      last_seen_at: Date;
      attempts: number;
      error_code: ErrorCode | null;
      last_error: string | null;
    }>(GET_REMOTE_STUDY, [node, studyUid]);
    const r = rows[0];
    if (!r) return null;
    return {
      remoteNode: r.remote_node,
      studyInstanceUid: r.study_instance_uid,
      state: r.state,
      firstSeenAt: r.first_seen_at,
      lastSeenAt: r.last_seen_at,
      attempts: r.attempts,
      errorCode: r.error_code,
      lastError: r.last_error,
    };
  }
}
