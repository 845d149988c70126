import type pg from 'pg';
import { AuditEventKind } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { withTransaction } from '../db/pool.js';
import { ErrorCode, RadScribeError } from '../errors.js';
import { getStudyState, StudyState } from '../ingest/study-lifecycle.js';
import { JobQueue } from './job-queue.js';
import { HAS_RUNNING_DESCRIBE_JOB } from './queries.js';
import { DescribeStudyTrigger, JobKind } from './types.js';

/**
 * An operator forces a study complete (issue 11 "Completeness": "or when an operator forces it (CLI
 * and API)"): its describe-study job is queued now instead of after the inactivity window. The
 * job, the study's move to 'queued' and the 'study-queued' audit event (actor: who asked) commit
 * together or not at all (issue 12: no event without its change). Allowed from the states the
 * lifecycle lets a job be queued from (study-lifecycle.ts): receiving and stable (before the
 * window), exported and failed (a re-run).
 */

export const ForceCompleteRefusal = {
  UnknownStudy: 'unknown-study',
  /** A describe job is queued or running for it: nothing to force. */
  AlreadyQueued: 'already-queued',
  /** The study was removed by retention: its instances are gone. */
  Expunged: 'expunged',
} as const;
export type ForceCompleteRefusal = (typeof ForceCompleteRefusal)[keyof typeof ForceCompleteRefusal];

export class ForceCompleteError extends RadScribeError {
  override name = 'ForceCompleteError';
  constructor(
    readonly refusal: ForceCompleteRefusal,
    studyInstanceUid: string,
  ) {
    super(
      refusal === ForceCompleteRefusal.UnknownStudy ? ErrorCode.NotFound : ErrorCode.StateConflict,
      refusal === ForceCompleteRefusal.UnknownStudy
        ? `no study ${studyInstanceUid} has been received`
        : refusal === ForceCompleteRefusal.Expunged
          ? `study ${studyInstanceUid} was removed by retention; send it again to describe it`
          : `study ${studyInstanceUid} already has a describe job queued or running`,
    );
  }
}

export interface ForcedCompletion {
  readonly jobId: number;
  readonly previousState: StudyState;
}

export async function forceStudyComplete(
  pool: pg.Pool,
  studyInstanceUid: string,
  by: { readonly actor: string; readonly source?: string },
  queue: JobQueue = new JobQueue(pool),
): Promise<ForcedCompletion> {
  return withTransaction(pool, async (client) => {
    const state = await getStudyState(client, studyInstanceUid);
    if (state === null) throw new ForceCompleteError(ForceCompleteRefusal.UnknownStudy, studyInstanceUid);
    if (state === StudyState.Expunged) throw new ForceCompleteError(ForceCompleteRefusal.Expunged, studyInstanceUid);
    if ((await client.query(HAS_RUNNING_DESCRIBE_JOB, [studyInstanceUid])).rowCount)
      throw new ForceCompleteError(ForceCompleteRefusal.AlreadyQueued, studyInstanceUid);
    const job = await queue.enqueue(client, {
      kind: JobKind.DescribeStudy,
      studyInstanceUid,
      payload: { trigger: DescribeStudyTrigger.Manual },
    });
    if (!job) throw new ForceCompleteError(ForceCompleteRefusal.AlreadyQueued, studyInstanceUid);
    await recordAudit(client, {
      kind: AuditEventKind.StudyQueued,
      actor: by.actor,
      ...(by.source ? { source: by.source } : {}),
      studyInstanceUid,
      detail: { jobId: job.id, trigger: DescribeStudyTrigger.Manual, previousState: state },
    });
    return { jobId: job.id, previousState: state };
  });
}
