import type { Queryable } from '../db/pool.js';
import { redact } from '../logger.js';
import {
  AUDIT_EVENTS,
  AuditEventKind,
  configChangeTypeCode,
  type EventActionCode,
  EventOutcome,
} from './audit-codes.js';

/**
 * The audit trail (STYLE §2.6: a table, not a log stream). Write it with the same client as the
 * transition it records, so the event commits or rolls back with it. The table is append-only and
 * hash-chained by triggers in migrations/0002_audit.sql; audit-verify.ts re-computes the chain.
 */

export interface AuditEventInput {
  readonly kind: AuditEventKind;
  /** PS3.15 A.5.1 EventOutcomeIndicator; default 0 (success). */
  readonly outcome?: EventOutcome;
  /** Who: HTTP user, calling AE title, remote node name, or 'radscribe' for our own actions. */
  readonly actor?: string;
  /** PS3.15 role 110153 Source (network address or node). */
  readonly source?: string;
  /** PS3.15 role 110152 Destination. */
  readonly destination?: string;
  /** Participant object Patient (PS3.15 A.5.3: Patient ID), where the event concerns one patient. */
  readonly patientId?: string;
  /** Participant object 110180 Study Instance UID. */
  readonly studyInstanceUid?: string;
  readonly sopInstanceUids?: readonly string[];
  /** UIDs, hashes, counts and codes only: never PHI or model text. PHI-named keys are redacted. */
  readonly detail?: Record<string, unknown>;
}

export interface AuditEvent {
  readonly id: number;
  readonly occurredAt: Date;
  readonly kind: AuditEventKind;
  readonly eventId: string;
  readonly eventTypeCode: string | null;
  readonly actionCode: EventActionCode;
  readonly outcome: EventOutcome;
  readonly actor: string | null;
  readonly source: string | null;
  readonly destination: string | null;
  readonly patientId: string | null;
  readonly studyInstanceUid: string | null;
  readonly sopInstanceUids: string[] | null;
  readonly detail: Record<string, unknown>;
  readonly prevHash: string;
  readonly rowHash: string;
}

export interface AuditFilter {
  readonly since?: Date;
  readonly until?: Date;
  readonly kind?: AuditEventKind;
  readonly studyInstanceUid?: string;
  readonly limit: number;
}

export const INSERT_AUDIT_EVENT = `
INSERT INTO audit_events (kind, event_id, event_type_code, action_code, outcome, actor, source, destination,
                          study_instance_uid, sop_instance_uids, detail, patient_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11::jsonb, $12)
RETURNING id, occurred_at, row_hash`;

/** $1 since, $2 until, $3 kind, $4 study (each null = any), $5 limit. Newest first. */
export const SELECT_AUDIT_EVENTS = `
SELECT * FROM audit_events
WHERE ($1::timestamptz IS NULL OR occurred_at >= $1) AND ($2::timestamptz IS NULL OR occurred_at < $2)
  AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR study_instance_uid = $4)
ORDER BY id DESC
LIMIT $5`;

const MAX_LIST_LIMIT = 10_000;

/** Append one event; id, timestamp and hashes are assigned by the trigger. */
export async function recordAudit(q: Queryable, ev: AuditEventInput): Promise<{ id: number; rowHash: string }> {
  const def = AUDIT_EVENTS[ev.kind];
  const typeCode = ev.kind === 'config-change' ? configChangeTypeCode(ev.detail?.scope) : def.eventTypeCode;
  const detail = redact(ev.detail ?? {}) as Record<string, unknown>;
  const { rows } = await q.query<{ id: string; row_hash: string }>(INSERT_AUDIT_EVENT, [
    ev.kind,
    def.eventId.code,
    typeCode?.code ?? null,
    def.action,
    ev.outcome ?? EventOutcome.Success,
    ev.actor ?? null,
    ev.source ?? null,
    ev.destination ?? null,
    ev.studyInstanceUid ?? null,
    ev.sopInstanceUids ? [...ev.sopInstanceUids] : null,
    JSON.stringify(detail),
    ev.patientId ?? null,
  ]);
  const row = rows[0];
  if (!row) throw new Error('INSERT INTO audit_events returned no row');
  return { id: Number(row.id), rowHash: row.row_hash };
}

/**
 * The columns that identify an event and its participants, as pg returns them (bigint id as text).
 * Every reader of audit_events (this list, the compliance query, the ATNA exporter) selects them and
 * maps them with auditEventFields, so the three cannot drift apart.
 */
export interface AuditEventColumns {
  id: string;
  kind: AuditEventKind;
  event_id: string;
  event_type_code: string | null;
  action_code: EventActionCode;
  outcome: EventOutcome;
  actor: string | null;
  source: string | null;
  destination: string | null;
  patient_id: string | null;
  study_instance_uid: string | null;
  sop_instance_uids: string[] | null;
}

export type AuditEventFields = Pick<
  AuditEvent,
  | 'id'
  | 'kind'
  | 'eventId'
  | 'eventTypeCode'
  | 'actionCode'
  | 'outcome'
  | 'actor'
  | 'source'
  | 'destination'
  | 'patientId'
  | 'studyInstanceUid'
  | 'sopInstanceUids'
>;

export function auditEventFields(r: AuditEventColumns): AuditEventFields {
  return {
    id: Number(r.id),
    kind: r.kind,
    eventId: r.event_id,
    eventTypeCode: r.event_type_code,
    actionCode: r.action_code,
    outcome: Number(r.outcome) as EventOutcome,
    actor: r.actor,
    source: r.source,
    destination: r.destination,
    patientId: r.patient_id,
    studyInstanceUid: r.study_instance_uid,
    sopInstanceUids: r.sop_instance_uids,
  };
}

interface AuditRow extends AuditEventColumns {
  occurred_at: Date;
  detail: Record<string, unknown>;
  prev_hash: string;
  row_hash: string;
}

/**
 * Read the trail. Reading it is itself audited as 110101 Audit Log Used (PS3.15 A.5.3.3), recorded
 * before the read so a failed read still leaves a trace.
 */
export async function listAudit(q: Queryable, filter: AuditFilter, requester: string): Promise<AuditEvent[]> {
  const limit = Math.max(1, Math.min(MAX_LIST_LIMIT, Math.trunc(filter.limit)));
  await recordAudit(q, {
    kind: AuditEventKind.AuditQuery,
    actor: requester,
    ...(filter.studyInstanceUid ? { studyInstanceUid: filter.studyInstanceUid } : {}),
    detail: {
      since: filter.since?.toISOString() ?? null,
      until: filter.until?.toISOString() ?? null,
      kind: filter.kind ?? null,
      limit,
    },
  });
  const { rows } = await q.query<AuditRow>(SELECT_AUDIT_EVENTS, [
    filter.since ?? null,
    filter.until ?? null,
    filter.kind ?? null,
    filter.studyInstanceUid ?? null,
    limit,
  ]);
  return rows.map((r) => ({
    ...auditEventFields(r),
    occurredAt: r.occurred_at,
    detail: r.detail,
    prevHash: r.prev_hash,
    rowHash: r.row_hash,
  }));
}

/** Verification lives in audit-verify.ts (application-side canonical form and anchors). */
export { type AuditChainReport, verifyAuditChain } from './audit-verify.js';
