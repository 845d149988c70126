import type pg from 'pg';
import { recordAudit } from '../audit/audit-log.js';
import { withTransaction } from '../db/pool.js';
import { childLogger } from '../logger.js';
import { DEFAULT_MAX_ATTEMPTS } from './job-queue.js';
import { ENQUEUE_JOB, PROMOTE_STUDY, SELECT_STABLE_STUDIES } from './queries.js';
import { DescribeStudyTrigger, JobKind } from './types.js';

/**
 * Study completeness by quiet period. DICOM has no "study complete" signal over STOW-RS or C-STORE
 * (PS3.4 Annex B stores instances one by one; Storage Commitment is about durability, not
 * completeness), so a study counts as complete once no instance has arrived for `windowMs`
 * (the same rule as Orthanc's StableAge and MONAI's grouping timeout).
 */

/** At most this many studies per sweep; the next sweep takes the rest. */
const PROMOTE_BATCH = 100;

/**
 * Promote every 'receiving' study quiet for `windowMs` to 'queued' with a describe-study job and a
 * 'study-queued' audit row: one transaction per study, so one bad study cannot block the rest.
 * Returns the promoted Study Instance UIDs.
 */
export async function promoteStableStudies(pool: pg.Pool, windowMs: number): Promise<string[]> {
  const log = childLogger('study-stability');
  const { rows } = await pool.query<{ study_instance_uid: string }>(SELECT_STABLE_STUDIES, [windowMs, PROMOTE_BATCH]);
  const promoted: string[] = [];
  for (const { study_instance_uid: uid } of rows) {
    const jobId = await withTransaction(pool, async (client) => {
      const promote = await client.query<{ instance_count: number }>(PROMOTE_STUDY, [uid, windowMs]);
      const study = promote.rows[0];
      // Not promoted: an instance arrived since the scan, or a describe job is still running.
      if (!study) return null;
      const payload = { trigger: DescribeStudyTrigger.Stable, instanceCount: study.instance_count };
      const job = await client.query<{ id: string }>(ENQUEUE_JOB, [
        JobKind.DescribeStudy,
        uid,
        JSON.stringify(payload),
        0,
        DEFAULT_MAX_ATTEMPTS,
        0,
      ]);
      // No row: a queued job already waits for this study; it has not run yet, so it covers it.
      const id = job.rows[0] ? Number(job.rows[0].id) : null;
      await recordAudit(client, {
        kind: 'study-queued',
        actor: 'radscribe',
        studyInstanceUid: uid,
        detail: { jobId: id, instanceCount: study.instance_count, stabilityWindowMs: windowMs },
      });
      return id ?? 0;
    });
    if (jobId !== null) {
      promoted.push(uid);
      log.info('study promoted', { studyInstanceUid: uid, jobId });
    }
  }
  return promoted;
}
