import type pg from 'pg';
import { withTransaction } from '../db/pool.js';
import { type ErrorCode, normalizeErrorString, RETRYABLE_CODES } from '../errors.js';
import { SrExportLedger } from '../export/sr-export-ledger.js';
import type { InstanceRefusal, RefusalRecorder } from '../ingest/types.js';
import { childLogger, type Logger } from '../logger.js';
import type { PipelineRecorder } from '../pipeline/describe-study.js';
import { AuditEventKind, EventOutcome } from './audit-codes.js';
import { recordAudit } from './audit-log.js';

/**
 * EventOutcomeIndicator (PS3.15 A.5.1) of a failed export, from its code only: a transient failure
 * is 4 Minor failure ("action restarted": the job queue retries it, resending the staged bytes);
 * a permanent one — the PACS refused the object, or holds other content under our UID
 * (export-conflict) — is 8 Serious failure: the job fails and the object is not at the destination.
 */
export function exportFailureOutcome(code: ErrorCode): EventOutcome {
  return RETRYABLE_CODES.has(code) ? EventOutcome.MinorFailure : EventOutcome.SeriousFailure;
}

/** Actor of the pipeline's own actions in the audit trail. */
export const PIPELINE_ACTOR = 'radscribe';

/**
 * The pipeline's side effects written to PostgreSQL: inference runs as audit events, and each
 * export as its ledger row and its audit event in one transaction (STYLE §2.6: the audit event
 * commits with the transition it records). Holds UIDs, codes and hashes only, never PHI or text.
 */
export class AuditRecorder implements PipelineRecorder, RefusalRecorder {
  private readonly log: Logger;
  #refusals: Promise<void> = Promise.resolve();
  constructor(
    private readonly pool: pg.Pool,
    logger?: Logger,
  ) {
    this.log = logger ?? childLogger('audit-recorder');
  }

  /**
   * A front end's own refusal (a part it could not frame or read, a request refused whole) as
   * `instance-refused`, outcome 8 (PS3.15 A.5.3.5 DICOM Instances Transferred, failed). The
   * router answers after the event is written; if the audit store fails, that is logged and the
   * answer still goes out (a refusal must not turn into a hang or a 500).
   */
  async instanceRefused(r: InstanceRefusal): Promise<void> {
    // One refusal write at a time: hostile input refuses in bursts (10 000 parts in one request,
    // many cut-off requests at once), and the audit store gets them in order instead of all at
    // once. On the embedded PGlite, concurrent bare statements from several pool connections can
    // also interleave in its one session and fail (issue 9, "the embedded database loses work").
    const write = this.#refusals.then(async () => {
      try {
        await this.#refusal(this.pool, r);
      } catch (err: unknown) {
        this.log.warn('could not audit refused instance', { errorCode: r.code, error: normalizeErrorString(err) });
      }
    });
    this.#refusals = write;
    await write;
  }

  async #refusal(client: pg.Pool, r: InstanceRefusal): Promise<void> {
    await recordAudit(client, {
      kind: AuditEventKind.InstanceRefused,
      outcome: EventOutcome.SeriousFailure,
      ...(r.actor ? { actor: r.actor } : {}),
      ...(r.remoteAddress ? { source: r.remoteAddress } : {}),
      ...(r.studyInstanceUid ? { studyInstanceUid: r.studyInstanceUid } : {}),
      detail: {
        via: r.via,
        errorCode: r.code,
        ...(r.calledAeTitle ? { calledAeTitle: r.calledAeTitle } : {}),
        ...(r.failureReason !== undefined ? { failureReason: r.failureReason } : {}),
        ...(r.httpStatus !== undefined ? { httpStatus: r.httpStatus } : {}),
        ...(r.part !== undefined ? { part: r.part } : {}),
        ...(r.sha256 ? { sha256: r.sha256 } : {}),
        ...(r.sizeBytes !== undefined ? { sizeBytes: r.sizeBytes } : {}),
      },
    });
  }

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
      await new SrExportLedger(client).recordSent(ev.record, ev.location, ev.delivery ?? 'stored');
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
          // The routing rule that chose this destination (issue 11; null: the default destination).
          ...(ev.route !== undefined ? { route: ev.route } : {}),
          // "already-present-identical": the PACS held our UID with the same content (issue 11).
          delivery: ev.delivery ?? 'stored',
          // Source attributes normalised or dropped in the SR: tag, keyword, action, reason (no values).
          ...(ev.sourceAttributes ? { sourceAttributes: ev.sourceAttributes } : {}),
          // A C-STORE warning (PS3.4 B.2.3: B000 coercion, B006 elements discarded, B007): stored, noted.
          ...(ev.dimseStatus !== undefined
            ? { dimseStatus: `0x${ev.dimseStatus.toString(16).padStart(4, '0').toUpperCase()}` }
            : {}),
        },
      });
    });
  }

  srExportFailed(ev: Parameters<PipelineRecorder['srExportFailed']>[0]): Promise<void> {
    return withTransaction(this.pool, async (client) => {
      await new SrExportLedger(client).recordFailed(ev.record, ev.code, ev.message);
      await recordAudit(client, {
        kind: AuditEventKind.SrExported,
        outcome: exportFailureOutcome(ev.code),
        actor: PIPELINE_ACTOR,
        destination: ev.record.destination,
        studyInstanceUid: ev.record.studyInstanceUid,
        sopInstanceUids: [ev.record.sopInstanceUid],
        detail: {
          code: ev.code,
          jobId: ev.record.jobId,
          object: ev.record.objectKind,
          // Why: the message names codes, UIDs and tag paths only (never values).
          reason: ev.message.slice(0, 500),
          ...(ev.differences && ev.differences.length > 0 ? { differences: ev.differences } : {}),
        },
      });
    });
  }
}
