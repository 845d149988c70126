import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Queryable } from '../db/pool.js';
import { RetrieveOutcome as Outcome, type QidoPollerOptions, type RetrieveOutcome } from '../pacs/qido-poller.js';

/**
 * The QIDO poller's audit hooks (issue 9: failures are audited as failures). PS3.15 A.5.1
 * EventOutcomeIndicator: a retrieve that failed and will be retried is a minor failure (4, "action
 * restarted"); the attempt that gives up is a serious failure (8, "action terminated"), and so is a
 * search that failed. Detail holds counts, codes and UIDs only (STYLE §2.6).
 */

/** Retrieve outcome → EventOutcomeIndicator. */
export const RETRIEVE_AUDIT_OUTCOME: Readonly<Record<RetrieveOutcome, EventOutcome>> = {
  [Outcome.Retrieved]: EventOutcome.Success,
  [Outcome.Retrying]: EventOutcome.MinorFailure,
  [Outcome.GivenUp]: EventOutcome.SeriousFailure,
};

/** At most this many WADO-RS request records go into one event's detail (a study of 2 000 instances). */
const MAX_REQUESTS_IN_DETAIL = 20;

export function qidoPollerAuditHooks(
  q: Queryable,
  actor: string,
): Required<Pick<QidoPollerOptions, 'onQuery' | 'onQueryFailed' | 'onRetrieve'>> {
  return {
    onQuery: async (node, query, count, info) => {
      await recordAudit(q, {
        kind: AuditEventKind.RemoteQuery,
        actor,
        destination: node,
        // scan: full lookback, incremental window or watch list (issue 11); pages; at the node's maxResults.
        detail: { query, results: count, ...(info ? { ...info } : {}) },
      });
    },
    onQueryFailed: async (node, query, code) => {
      await recordAudit(q, {
        kind: AuditEventKind.RemoteQuery,
        outcome: EventOutcome.SeriousFailure,
        actor,
        destination: node,
        detail: { query, errorCode: code },
      });
    },
    // In the tracker's transaction (tx) when it has one: the event commits with the state change.
    onRetrieve: async (node, studyInstanceUid, r, tx) => {
      await recordAudit(tx ?? q, {
        kind: AuditEventKind.RemoteRetrieve,
        outcome: RETRIEVE_AUDIT_OUTCOME[r.outcome],
        actor,
        source: node,
        studyInstanceUid,
        detail: {
          stored: r.stored,
          duplicate: r.duplicate,
          failed: r.failed,
          outcome: r.outcome,
          attempt: r.attempt,
          maxAttempts: r.maxAttempts,
          ...(r.errorCode ? { errorCode: r.errorCode } : {}),
          ...(r.failedInstances.length > 0 ? { failedInstances: [...r.failedInstances] } : {}),
          ...(r.transcodedInstances.length > 0 ? { transcodedInstances: [...r.transcodedInstances] } : {}),
          ...(r.reopened ? { reopened: true } : {}),
          // Only these series of a study retrieved before (late series, issue 11).
          ...(r.lateSeries ? { lateSeries: [...r.lateSeries] } : {}),
          ...(r.nextAttemptAt ? { nextAttemptAt: r.nextAttemptAt.toISOString() } : {}),
          requests: r.requests
            .slice(0, MAX_REQUESTS_IN_DETAIL)
            .map((x) => `${x.level} ${x.transferSyntax} ${x.status}`),
          requestCount: r.requests.length,
        },
      });
    },
  };
}
