import type pg from 'pg';
import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { withTransaction } from '../db/pool.js';
import type { ErrorCode } from '../errors.js';
import { clearDecodeStarted, countQuarantined, markDecodeStarted, quarantineInstance } from './instance-repository.js';
import type { QuarantineReason, StoredInstance } from './types.js';

/** Actor of quarantines in the audit trail: the pipeline's own decision. */
const QUARANTINE_ACTOR = 'radscribe';

/** What a quarantine records beside its reason: codes only, never PHI or file content. */
export interface QuarantineDetail {
  readonly errorCode?: ErrorCode;
  /** The DICOM limit broken (src/dicom/limits.ts LimitViolation), when that was the cause. */
  readonly violation?: string;
  /** 1-based frame being prepared. */
  readonly frame?: number;
  readonly jobId?: number;
}

/**
 * Poison instances (issue 9): the decode marker written before the image-prep worker opens a file,
 * and the quarantine of an instance whose decoding broke a limit, crashed or killed the worker, or
 * was in flight when the process died. The quarantine and its 'instance-quarantined' audit event
 * (110113 Security Alert, audit-codes.ts) commit together; the `instances` row is written by its
 * owner, instance-repository.ts.
 */
export class InstanceQuarantine {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** Committed before the decode starts, so a process crash during it names this instance. */
  decodeStarting(inst: Pick<StoredInstance, 'sopInstanceUid'>): Promise<void> {
    return markDecodeStarted(this.#pool, inst.sopInstanceUid);
  }

  /** The decode answered; the instance did not take the process down. */
  decodeAnswered(inst: Pick<StoredInstance, 'sopInstanceUid'>): Promise<void> {
    return clearDecodeStarted(this.#pool, inst.sopInstanceUid);
  }

  /** Quarantine and audit in one transaction; false when it was quarantined already. */
  quarantine(
    inst: Pick<StoredInstance, 'sopInstanceUid' | 'studyInstanceUid' | 'seriesInstanceUid' | 'fileSha256'>,
    reason: QuarantineReason,
    detail: QuarantineDetail = {},
  ): Promise<boolean> {
    return withTransaction(this.#pool, async (client) => {
      if (!(await quarantineInstance(client, inst.sopInstanceUid, reason))) return false;
      await recordAudit(client, {
        kind: AuditEventKind.InstanceQuarantined,
        outcome: EventOutcome.SeriousFailure,
        actor: QUARANTINE_ACTOR,
        studyInstanceUid: inst.studyInstanceUid,
        sopInstanceUids: [inst.sopInstanceUid],
        detail: { reason, seriesInstanceUid: inst.seriesInstanceUid, sha256: inst.fileSha256, ...detail },
      });
      return true;
    });
  }

  quarantinedCount(studyInstanceUid: string): Promise<number> {
    return countQuarantined(this.#pool, studyInstanceUid);
  }
}
