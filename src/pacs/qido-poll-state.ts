import type { Queryable } from '../db/pool.js';

/**
 * What the QIDO-RS poller remembers between polls of one node (issue 11; migration 0025): the end of
 * the last successful poll's search window (the high-water mark the next incremental window starts
 * from, less the overlap) and when the whole lookback was last searched. Plus the watch list: the
 * studies the next poll asks for by StudyInstanceUID (UID list matching, PS3.4 C.2.2.2.2) whatever
 * their StudyDate, because the incremental window is on acquisition time and cannot see a study
 * that is still arriving (its second half, a late series).
 */
export interface PollMark {
  readonly windowEnd: Date;
  readonly lastFullScanAt: Date;
}

export interface QidoPollState {
  mark(node: string): Promise<PollMark | null>;
  /** After a poll whose searches all succeeded: `windowEnd` = that poll's clock; `fullScanAt` when it was a full scan. */
  saveMark(node: string, windowEnd: Date, fullScanAt: Date | null): Promise<void>;
  /**
   * Studies of the node to ask for again by UID: not yet retrieved ('seen', 'failed': a poll that
   * stopped early or a retrieve that will be retried), and any first seen within `watchMs`.
   */
  watched(node: string, watchMs: number, limit: number): Promise<string[]>;
}

export const GET_POLL_MARK = 'SELECT window_end, last_full_scan_at FROM qido_poll_marks WHERE remote_node = $1';

/** $3 NULL keeps the previous full-scan time (an incremental poll). */
export const SAVE_POLL_MARK = `
INSERT INTO qido_poll_marks (remote_node, window_end, last_full_scan_at)
VALUES ($1, $2::timestamptz, coalesce($3::timestamptz, $2::timestamptz))
ON CONFLICT (remote_node) DO UPDATE SET
  window_end = $2::timestamptz,
  last_full_scan_at = coalesce($3::timestamptz, qido_poll_marks.last_full_scan_at), updated_at = now()`;

export const WATCHED_STUDIES = `
SELECT study_instance_uid FROM remote_studies
WHERE remote_node = $1
  AND (state IN ('seen', 'failed') OR first_seen_at > now() - $2::float8 * interval '1 millisecond')
ORDER BY first_seen_at DESC, study_instance_uid
LIMIT $3`;

export class PgQidoPollState implements QidoPollState {
  readonly #q: Queryable;

  constructor(q: Queryable) {
    this.#q = q;
  }

  async mark(node: string): Promise<PollMark | null> {
    const { rows } = await this.#q.query<{ window_end: Date; last_full_scan_at: Date }>(GET_POLL_MARK, [node]);
    const r = rows[0];
    return r ? { windowEnd: new Date(r.window_end), lastFullScanAt: new Date(r.last_full_scan_at) } : null;
  }

  async saveMark(node: string, windowEnd: Date, fullScanAt: Date | null): Promise<void> {
    await this.#q.query(SAVE_POLL_MARK, [node, windowEnd, fullScanAt]);
  }

  async watched(node: string, watchMs: number, limit: number): Promise<string[]> {
    const { rows } = await this.#q.query<{ study_instance_uid: string }>(WATCHED_STUDIES, [node, watchMs, limit]);
    return rows.map((r) => r.study_instance_uid);
  }
}
