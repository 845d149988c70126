import type pg from 'pg';
import { withTransaction } from '../db/pool.js';
import { SrExportLedger } from '../export/sr-export-ledger.js';
import type { PipelineRecorder } from '../pipeline/describe-study.js';
import { AuditEventKind, EventOutcome } from './audit-codes.js';
import { recordAudit } from './audit-log.js';

/** Actor of the pipeline's own actions in the audit trail. */
export const PIPELINE_ACTOR = 'radscribe';

/**
 * The pipeline's side effects written to PostgreSQL: inference runs as audit events, and each
 * export as its ledger row and its audit event in one transaction (STYLE §2.6: the audit event
 * commits with the transition it records). Holds UIDs, codes and hashes only, never PHI or text.
 */
export class AuditRecorder implements PipelineRecorder {
  constructor(private readonly pool: pg.Pool) {}

  async inferenceRun(ev: Parameters<PipelineRecorder['inferenceRun']>[0]): Promise<void> {
    await recordAudit(this.pool, {
      kind: AuditEventKind.InferenceRun,
      outcome: ev.outcome === 'success' ? EventOutcome.Success : EventOutcome.SeriousFailure,
      actor: PIPELINE_ACTOR,
      studyInstanceUid: ev.studyInstanceUid,
      sopInstanceUids: [ev.sopInstanceUid],
      detail: { frame: ev.frame, ...ev.detail },
    });
  }

  srExported(ev: Parameters<PipelineRecorder['srExported']>[0]): Promise<void> {
    return withTransaction(this.pool, async (client) => {
      await new SrExportLedger(client).recordSent(ev.record, ev.location);
      await recordAudit(client, {
        kind: AuditEventKind.SrExported,
        actor: PIPELINE_ACTOR,
        destination: ev.record.destination,
        studyInstanceUid: ev.record.studyInstanceUid,
        sopInstanceUids: [ev.record.sopInstanceUid],
        detail: {
          location: ev.location,
          jobId: ev.record.jobId,
          sopClassUid: ev.record.sopClassUid,
          object: ev.record.objectKind,
          deviceUid: ev.record.deviceUid,
          // Source attributes normalised or dropped in the SR: tag, keyword, action, reason (no values).
          ...(ev.sourceAttributes ? { sourceAttributes: ev.sourceAttributes } : {}),
        },
      });
    });
  }

  srExportFailed(ev: Parameters<PipelineRecorder['srExportFailed']>[0]): Promise<void> {
    return withTransaction(this.pool, async (client) => {
      await new SrExportLedger(client).recordFailed(ev.record, ev.code, ev.message);
      await recordAudit(client, {
        kind: AuditEventKind.SrExported,
        outcome: EventOutcome.SeriousFailure,
        actor: PIPELINE_ACTOR,
        destination: ev.record.destination,
        studyInstanceUid: ev.record.studyInstanceUid,
        sopInstanceUids: [ev.record.sopInstanceUid],
        detail: { code: ev.code, jobId: ev.record.jobId, object: ev.record.objectKind },
      });
    });
  }
}
