import type pg from 'pg';
import { AuditEventKind } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import type { CompletenessConfig } from '../config/completeness.js';
import { withTransaction } from '../db/pool.js';
import { listSettledStudies, markStable, studyQueued } from '../ingest/study-lifecycle.js';
import { childLogger } from '../logger.js';
import {
  type CompletenessVerdict,
  CompletionReason,
  type JudgePolicy,
  lockAndJudge,
  shortestWindowMs,
} from './completeness.js';
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
 * With per-source windows or expected-series rules, studies idle for the shortest window are
 * looked at (oldest first), and each is judged under its row lock; this many at most per sweep.
 */
const JUDGE_SCAN = 500;

/** What the sweep applies: one window (before issue 11), or windows per source and expected series. */
export interface CompletenessPolicy {
  readonly stabilityWindowMs: number;
  readonly completeness?: CompletenessConfig;
  /** Epoch ms since when instances could arrive (the worker's start): quiet before it does not count. */
  readonly listeningSince?: number;
}

/**
 * Promote every study quiet for `windowMs` along receiving → stable → queued, with a
 * describe-study job and a 'study-queued' audit row: one transaction per study, so one bad study
 * cannot block the rest. A study whose earlier describe job still runs (it started on the
 * incomplete study) stays 'stable' until that job ends; a later sweep queues the re-run.
 * Returns the Study Instance UIDs queued by this sweep.
 */
export async function promoteStableStudies(
  pool: pg.Pool,
  windowOrPolicy: number | CompletenessPolicy,
  queue: JobQueue = new JobQueue(pool),
): Promise<string[]> {
  const policy: CompletenessPolicy =
    typeof windowOrPolicy === 'number' ? { stabilityWindowMs: windowOrPolicy } : windowOrPolicy;
  const c = policy.completeness;
  if (c && (c.sources.length > 0 || c.expect.length > 0))
    return promoteJudgedStudies(
      pool,
      {
        stabilityWindowMs: policy.stabilityWindowMs,
        completeness: c,
        ...(policy.listeningSince !== undefined ? { listeningSince: policy.listeningSince } : {}),
      },
      queue,
    );
  const windowMs = policy.stabilityWindowMs;
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
        detail: { jobId: id, instanceCount, reason: CompletionReason.WindowElapsed, stabilityWindowMs: windowMs },
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

/**
 * The sweep with per-source windows and expected-series rules (src/config/completeness.ts): each
 * candidate is locked with SKIP LOCKED and judged on its series' activity (completeness.ts), and
 * promoted receiving → stable → queued in the same transaction, with the reason in the audit event.
 */
async function promoteJudgedStudies(pool: pg.Pool, policy: JudgePolicy, queue: JobQueue): Promise<string[]> {
  const log = childLogger('study-stability');
  const promoted: string[] = [];
  for (const uid of await listSettledStudies(pool, shortestWindowMs(policy), JUDGE_SCAN)) {
    if (promoted.length >= PROMOTE_BATCH) break;
    const queued = await withTransaction(
      pool,
      async (client): Promise<{ jobId: number | null; verdict: CompletenessVerdict } | null> => {
        const verdict = await lockAndJudge(client, uid, policy);
        if (!verdict?.complete) return null;
        // Under the lock we hold, the judgement stands: the window argument 0 only re-states it.
        const instanceCount = await markStable(client, uid, 0);
        if (instanceCount === null) return null;
        if ((await client.query(HAS_RUNNING_DESCRIBE_JOB, [uid])).rowCount) return null;
        const payload = { trigger: DescribeStudyTrigger.Stable, instanceCount };
        const job = await queue.enqueue(client, { kind: JobKind.DescribeStudy, studyInstanceUid: uid, payload });
        if (!job) await studyQueued(client, uid);
        const id = job?.id ?? null;
        await recordAudit(client, {
          kind: AuditEventKind.StudyQueued,
          actor: 'radscribe',
          studyInstanceUid: uid,
          detail: {
            jobId: id,
            instanceCount,
            reason: verdict.reason ?? CompletionReason.WindowElapsed,
            ...(verdict.rule ? { rule: verdict.rule } : {}),
            studyWindowMs: verdict.studyWindowMs,
            seriesWindowMs: verdict.seriesWindowMs,
            seriesCount: verdict.seriesCount,
            ...(verdict.sources.length > 0 ? { sources: verdict.sources } : {}),
          },
        });
        return { jobId: id, verdict };
      },
    );
    if (queued) {
      promoted.push(uid);
      log.info('study promoted', {
        studyInstanceUid: uid,
        jobId: queued.jobId,
        reason: queued.verdict.reason,
        rule: queued.verdict.rule,
      });
    }
  }
  return promoted;
}
