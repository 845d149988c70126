import { createHash } from 'node:crypto';

/**
 * The canonical text of an audit row and the chain hash, computed in application code from the raw
 * columns (issue 15: `audit verify` must not trust the database it checks — a superuser can replace
 * `audit_event_canonical()`). The text is byte for byte what migrations/0014 (and 0002 before it)
 * make the trigger hash: `jsonb_build_object(...)::text`, whose output PostgreSQL fixes as keys
 * sorted by length, then bytewise; `"key": value` pairs joined by `, `; strings escaped as
 * escape_json() does. test/integration/audit-tamper.int.test.ts checks both agree on every kind.
 */

/** prev_hash of the first row. */
export const GENESIS_HASH = '0'.repeat(64);

/** One row as read for verification: every hashed column, raw. */
export interface AuditChainRow {
  readonly id: string;
  /** extract(epoch FROM occurred_at): seconds with up to 6 decimals, exact (numeric). */
  readonly occurredEpoch: string;
  readonly kind: string;
  readonly eventId: string;
  readonly eventTypeCode: string | null;
  readonly actionCode: string;
  readonly outcome: number;
  readonly actor: string | null;
  readonly source: string | null;
  readonly destination: string | null;
  readonly patientId: string | null;
  readonly studyInstanceUid: string | null;
  readonly sopInstanceUids: readonly (string | null)[] | null;
  /** The detail column's jsonb text output (already canonical: jsonb has one output form). */
  readonly detailText: string;
  /** The chain (0–31) the row was appended to (migration 0016); 0 for every earlier row. */
  readonly chainLane: number;
  readonly prevHash: string;
  readonly rowHash: string;
}

/**
 * Keyset page of the chain in id order, every column raw. Only type output functions and
 * `extract` are involved: no function a user can redefine. $1 after id, $2 page size.
 */
export const SELECT_AUDIT_CHAIN_RAW = `
SELECT a.id::text AS id, extract(epoch FROM a.occurred_at)::text AS occurred_epoch, a.kind, a.event_id,
       a.event_type_code, a.action_code, a.outcome, a.actor, a.source, a.destination, a.patient_id,
       a.study_instance_uid, a.sop_instance_uids, a.detail::text AS detail_text, a.chain_lane, a.prev_hash, a.row_hash
FROM audit_events a WHERE a.id > $1 ORDER BY a.id LIMIT $2`;

export interface RawChainRow {
  id: string;
  occurred_epoch: string;
  kind: string;
  event_id: string;
  event_type_code: string | null;
  action_code: string;
  outcome: number;
  actor: string | null;
  source: string | null;
  destination: string | null;
  patient_id: string | null;
  study_instance_uid: string | null;
  sop_instance_uids: (string | null)[] | null;
  detail_text: string;
  chain_lane: number;
  prev_hash: string;
  row_hash: string;
}

export function chainRowOf(r: RawChainRow): AuditChainRow {
  return {
    id: r.id,
    occurredEpoch: r.occurred_epoch,
    kind: r.kind,
    eventId: r.event_id,
    eventTypeCode: r.event_type_code,
    actionCode: r.action_code,
    outcome: Number(r.outcome),
    actor: r.actor,
    source: r.source,
    destination: r.destination,
    patientId: r.patient_id,
    studyInstanceUid: r.study_instance_uid,
    sopInstanceUids: r.sop_instance_uids,
    detailText: r.detail_text,
    chainLane: Number(r.chain_lane),
    prevHash: r.prev_hash,
    rowHash: r.row_hash,
  };
}

/** PostgreSQL escape_json(): `"` `\` and the C0 controls; everything else verbatim (UTF-8). */
export function jsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

const str = (v: string | null): string => (v === null ? 'null' : jsonString(v));

/**
 * to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') from the exact epoch
 * seconds (microsecond resolution; a JS Date would drop the microseconds).
 */
export function utcMicros(epoch: string): string {
  const m = /^(-?\d+)(?:\.(\d{1,6}))?$/.exec(epoch.trim());
  if (!m) throw new Error(`not an epoch in seconds: ${epoch}`);
  const seconds = Number(m[1]);
  const micros = (m[2] ?? '').padEnd(6, '0');
  const iso = new Date(seconds * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  return `${iso.slice(0, 19)}.${micros}Z`;
}

/** jsonb orders object keys by length, then bytewise (PostgreSQL jsonb.c lengthCompareJsonbString). */
function jsonbKeyOrder(a: string, b: string): number {
  const la = Buffer.byteLength(a);
  const lb = Buffer.byteLength(b);
  if (la !== lb) return la - lb;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The canonical text the chain hashes (see the module comment). */
export function canonicalAuditEvent(r: AuditChainRow): string {
  const fields: Record<string, string> = {
    id: String(BigInt(r.id)),
    occurred_at: jsonString(utcMicros(r.occurredEpoch)),
    kind: jsonString(r.kind),
    event_id: jsonString(r.eventId),
    event_type_code: str(r.eventTypeCode),
    action_code: jsonString(r.actionCode),
    outcome: String(r.outcome),
    actor: str(r.actor),
    source: str(r.source),
    destination: str(r.destination),
    study_instance_uid: str(r.studyInstanceUid),
    sop_instance_uids: r.sopInstanceUids === null ? 'null' : `[${r.sopInstanceUids.map(str).join(', ')}]`,
    detail: r.detailText,
  };
  // Added by migration 0014 only when set, so older rows keep their text.
  if (r.patientId !== null) fields.patient_id = jsonString(r.patientId);
  // Added by migration 0016 only for lanes other than 0, so rows chained before keep their text.
  if (r.chainLane !== 0) fields.chain_lane = String(r.chainLane);
  const keys = Object.keys(fields).sort(jsonbKeyOrder);
  return `{${keys.map((k) => `${jsonString(k)}: ${fields[k]}`).join(', ')}}`;
}

/** row_hash = sha256(prev_hash || canonical), hex (migrations/0002 audit_events_chain()). */
export function chainHash(prevHash: string, canonical: string): string {
  return createHash('sha256')
    .update(prevHash + canonical, 'utf8')
    .digest('hex');
}
