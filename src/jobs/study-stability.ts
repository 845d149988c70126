import type pg from 'pg';
import { AuditEventKind } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { withTransaction } from '../db/pool.js';
import { listSettledStudies, markStable, studyQueued } from '../ingest/study-lifecycle.js';
import { childLogger } from '../logger.js';
import { JobQueue } from './job-queue.js';
import { HAS_RUNNING_DESCRIBE_JOB } from './queries.js';
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
 * Promote every study quiet for `windowMs` along receiving → stable → queued, with a
 * describe-study job and a 'study-queued' audit row: one transaction per study, so one bad study
 * cannot block the rest. A study whose earlier describe job still runs (it started on the
 * incomplete study) stays 'stable' until that job ends; a later sweep queues the re-run.
 * Returns the Study Instance UIDs queued by this sweep.
 */
export async function promoteStableStudies(
  pool: pg.Pool,
  windowMs: number,
  queue: JobQueue = new JobQueue(pool),
): Promise<string[]> {
  const log = childLogger('study-stability');
  const promoted: string[] = [];
  for (const uid of await listSettledStudies(pool, windowMs, PROMOTE_BATCH)) {
    const jobId = await withTransaction(pool, async (client) => {
      const instanceCount = await markStable(client, uid, windowMs);
      // Not settled: an instance arrived since the scan.
      if (instanceCount === null) return null;
      if ((await client.query(HAS_RUNNING_DESCRIBE_JOB, [uid])).rowCount) return null;
      const payload = { trigger: DescribeStudyTrigger.Stable, instanceCount };
      const job = await queue.enqueue(client, { kind: JobKind.DescribeStudy, studyInstanceUid: uid, payload });
      // No job: a queued one already waits for this study; it has not run yet, so it covers it.
      if (!job) await studyQueued(client, uid);
      const id = job?.id ?? null;
      await recordAudit(client, {
        kind: AuditEventKind.StudyQueued,
        actor: 'radscribe',
        studyInstanceUid: uid,
        detail: { jobId: id, instanceCount, stabilityWindowMs: windowMs },
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
