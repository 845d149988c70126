import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Queryable } from '../db/pool.js';
import { ErrorCode, normalizeErrorString } from '../errors.js';
import type { Logger } from '../logger.js';
import { FailureReason, type ReceivedVia } from './types.js';

/**
 * Receipts refused because the database was unavailable (issue 9) cannot be audited when they
 * happen: the audit trail is in that database. They are counted here, in memory and bounded, and
 * written as one `instance-refused` event with outcome 8 (serious failure, PS3.15 A.5.3.3 event
 * outcome) once the database answers again, with the refused SOP Instance UIDs (at most
 * MAX_LISTED_UIDS), the count and the time span. A process that dies before the database comes
 * back loses the tally; the refusals are still in the log, by UID, and the clients were told 0xA700.
 */
export const MAX_LISTED_UIDS = 200;

export class OutageRefusals {
  #count = 0;
  #uids: string[] = [];
  #via = new Set<ReceivedVia>();
  #from: Date | undefined;
  #until: Date | undefined;
  #flushing = false;

  /** One receipt refused as database-unavailable. */
  record(sopInstanceUid: string | undefined, via: ReceivedVia): void {
    this.#count++;
    if (sopInstanceUid && this.#uids.length < MAX_LISTED_UIDS) this.#uids.push(sopInstanceUid);
    this.#via.add(via);
    const now = new Date();
    this.#from ??= now;
    this.#until = now;
  }

  get pending(): number {
    return this.#count;
  }

  /** Write the tally if there is one; kept for the next try if the database fails again. */
  async flush(q: Queryable, log: Logger): Promise<void> {
    if (this.#count === 0 || this.#flushing) return;
    this.#flushing = true;
    const count = this.#count;
    const uids = this.#uids;
    const via = [...this.#via];
    const from = this.#from;
    const until = this.#until;
    try {
      await recordAudit(q, {
        kind: AuditEventKind.InstanceRefused,
        outcome: EventOutcome.SeriousFailure,
        ...(uids.length > 0 ? { sopInstanceUids: uids } : {}),
        detail: {
          via: via.length === 1 ? via[0] : via,
          errorCode: ErrorCode.DatabaseUnavailable,
          failureReason: FailureReason.OutOfResources,
          refused: count,
          listed: uids.length,
          from: from?.toISOString() ?? null,
          until: until?.toISOString() ?? null,
        },
      });
      // Only what was written is taken off: refusals recorded meanwhile stay for the next flush.
      this.#count -= count;
      this.#uids = this.#uids.slice(uids.length);
      if (this.#count === 0) {
        this.#via.clear();
        this.#from = undefined;
        this.#until = undefined;
      }
    } catch (err: unknown) {
      log.warn('could not audit receipts refused during a database outage yet', {
        refused: count,
        error: normalizeErrorString(err),
      });
    } finally {
      this.#flushing = false;
    }
  }
}
