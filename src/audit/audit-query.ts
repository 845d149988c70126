import type { Queryable } from '../db/pool.js';
import { ErrorCode, errorCodeOf, RadScribeError } from '../errors.js';
import { utcMicros } from './audit-canonical.js';
import { AUDIT_EVENTS, AuditEventKind, EventOutcome } from './audit-codes.js';
import { type AuditEventColumns, auditEventFields, recordAudit } from './audit-log.js';

/**
 * Queries for compliance staff (issue 12): filters on time range, event type, outcome, user or AE,
 * network address, patient ID and study UID; newest first with keyset pagination on
 * (occurred_at, id), which every index of migrations/0014 ends in; JSON or CSV. The same parser
 * serves `GET /api/audit/events` and `radscribe audit query`. Every query, refused ones included,
 * is itself audited as 110101 Audit Log Used (PS3.15 A.5.3.3).
 */

export const AuditQueryParameter = {
  From: 'from',
  To: 'to',
  Type: 'type',
  Outcome: 'outcome',
  Actor: 'actor',
  Address: 'address',
  PatientId: 'patientId',
  StudyUid: 'studyUid',
  Limit: 'limit',
  Cursor: 'cursor',
  Format: 'format',
} as const;
export type AuditQueryParameter = (typeof AuditQueryParameter)[keyof typeof AuditQueryParameter];
const PARAMETERS: ReadonlySet<string> = new Set(Object.values(AuditQueryParameter));

export const AuditOutputFormat = { Json: 'json', Csv: 'csv' } as const;
export type AuditOutputFormat = (typeof AuditOutputFormat)[keyof typeof AuditOutputFormat];

export const DEFAULT_AUDIT_QUERY_LIMIT = 100;
export const MAX_AUDIT_QUERY_LIMIT = 1000;

/** A filter that does not parse: 400 with the parameter named (never 500). */
export class AuditQueryError extends RadScribeError {
  override name = 'AuditQueryError';
  constructor(
    readonly field: string,
    why: string,
  ) {
    super(ErrorCode.RequestInvalid, `query parameter ${field}: ${why}`);
  }
}

export interface AuditCursor {
  /** occurred_at of the last row returned, UTC with microseconds. */
  readonly occurredAt: string;
  readonly id: string;
}

export interface AuditQuery {
  /** ISO 8601 text, validated (PostgreSQL parses it: microseconds kept). Inclusive. */
  readonly from?: string;
  /** Exclusive. */
  readonly to?: string;
  /** Kinds the `type` filter resolved to (a kind, or a DCM event ID such as 110101). */
  readonly kinds?: readonly AuditEventKind[];
  readonly outcome?: EventOutcome;
  readonly actor?: string;
  readonly address?: string;
  readonly patientId?: string;
  readonly studyInstanceUid?: string;
  readonly limit: number;
  readonly cursor?: AuditCursor;
  readonly format: AuditOutputFormat;
}

/** One event as the query returns it (occurredAt keeps PostgreSQL's microseconds). */
export interface AuditEventRecord {
  readonly id: number;
  readonly occurredAt: string;
  readonly kind: AuditEventKind;
  readonly eventId: string;
  readonly eventTypeCode: string | null;
  readonly actionCode: string;
  readonly outcome: EventOutcome;
  readonly actor: string | null;
  readonly source: string | null;
  readonly destination: string | null;
  readonly patientId: string | null;
  readonly studyInstanceUid: string | null;
  readonly sopInstanceUids: string[] | null;
  readonly detail: Record<string, unknown>;
  readonly rowHash: string;
}

export interface AuditQueryPage {
  readonly events: AuditEventRecord[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  readonly nextCursor: string | null;
}

/** Query parameters as express or the CLI give them: a value, repeated values, or absent. */
export type RawParameters = Readonly<Record<string, unknown>>;

const KINDS: ReadonlySet<string> = new Set(Object.values(AuditEventKind));
const OUTCOMES: ReadonlySet<number> = new Set(Object.values(EventOutcome));
const UID = /^[0-9]+(?:\.[0-9]+)*$/;
const hasControl = (s: string): boolean => [...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

/** Kinds per DCM event ID (CID 400), for `type=110101`. */
function kindsOfEventId(code: string): AuditEventKind[] {
  return (Object.entries(AUDIT_EVENTS) as [AuditEventKind, (typeof AUDIT_EVENTS)[AuditEventKind]][])
    .filter(([, d]) => d.eventId.code === code)
    .map(([k]) => k);
}

function one(params: RawParameters, name: string): string | undefined {
  const v = params[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new AuditQueryError(name, 'give it once, as a single value');
  return v;
}

function text(params: RawParameters, name: string, max: number, pattern?: RegExp): string | undefined {
  const v = one(params, name);
  if (v === undefined) return undefined;
  if (v.length === 0 || v.length > max) throw new AuditQueryError(name, `must be 1 to ${max} characters`);
  if (hasControl(v)) throw new AuditQueryError(name, 'must not contain control characters');
  if (pattern && !pattern.test(v)) throw new AuditQueryError(name, 'is not a valid value');
  return v;
}

const ISO_PARTS =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(?:Z|[+-](\d{2})(?::?(\d{2}))?)?)?$/;

/**
 * An ISO 8601 date or date-time, checked field by field (JS Date rolls 2026-02-30 over to March,
 * PostgreSQL refuses it: a value one accepts and the other refuses would be a 500). The text itself
 * goes to PostgreSQL, so microseconds are kept; no offset means UTC.
 */
function instant(params: RawParameters, name: string): { text: string; date: Date } | undefined {
  const v = one(params, name);
  if (v === undefined) return undefined;
  const bad = () =>
    new AuditQueryError(name, 'must be an ISO 8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T08:00:00Z');
  const m = ISO_PARTS.exec(v);
  if (!m) throw bad();
  const [y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0] = m
    .slice(1)
    .map((x) => (x === undefined ? undefined : Number(x)));
  const days = new Date(Date.UTC(y as number, mo as number, 0)).getUTCDate();
  if ((y as number) < 1 || (mo as number) < 1 || (mo as number) > 12 || (d as number) < 1 || (d as number) > days)
    throw bad();
  if ((h as number) > 23 || (mi as number) > 59 || (sec as number) > 59 || (oh as number) > 15 || (om as number) > 59)
    throw bad();
  const hasZone = /(?:Z|[+-]\d{2}(?::?\d{2})?)$/.test(v) && v.length > 10;
  const text = hasZone ? v : `${v}${v.length === 10 ? 'T00:00:00' : ''}Z`;
  const date = new Date(text.replace(' ', 'T'));
  if (Number.isNaN(date.getTime())) throw bad();
  return { text, date };
}

export function encodeCursor(c: AuditCursor): string {
  return Buffer.from(JSON.stringify([c.occurredAt, c.id]), 'utf8').toString('base64url');
}

function decodeCursor(v: string): AuditCursor {
  const bad = () => new AuditQueryError(AuditQueryParameter.Cursor, 'is not a cursor this API returned');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(v, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw bad();
  const [at, id] = parsed as unknown[];
  if (typeof at !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(at)) throw bad();
  if (typeof id !== 'string' || !/^\d{1,19}$/.test(id)) throw bad();
  return { occurredAt: at, id };
}

/**
 * Validates the parameters; throws AuditQueryError naming the first bad one. An unknown parameter
 * is refused too: a misspelled filter must not silently widen the answer to everything.
 */
export function parseAuditQuery(params: RawParameters): AuditQuery {
  for (const k of Object.keys(params))
    if (!PARAMETERS.has(k)) throw new AuditQueryError(k, `is not a filter (known: ${[...PARAMETERS].join(', ')})`);
  const from = instant(params, AuditQueryParameter.From);
  const to = instant(params, AuditQueryParameter.To);
  if (from && to && to.date.getTime() < from.date.getTime())
    throw new AuditQueryError(AuditQueryParameter.To, 'must not be before from');
  let kinds: AuditEventKind[] | undefined;
  const type = one(params, AuditQueryParameter.Type);
  if (type !== undefined) {
    kinds = [];
    for (const t of type.split(',')) {
      const k = t.trim();
      if (KINDS.has(k)) kinds.push(k as AuditEventKind);
      else if (/^\d{6}$/.test(k) && kindsOfEventId(k).length > 0) kinds.push(...kindsOfEventId(k));
      else
        throw new AuditQueryError(
          AuditQueryParameter.Type,
          `must be an event kind (${[...KINDS].join(', ')}) or a DCM event ID RadScribe records (e.g. 110101), comma-separated`,
        );
    }
    kinds = [...new Set(kinds)];
  }
  let outcome: EventOutcome | undefined;
  const outcomeText = one(params, AuditQueryParameter.Outcome);
  if (outcomeText !== undefined) {
    const n = Number(outcomeText);
    if (!/^\d{1,2}$/.test(outcomeText) || !OUTCOMES.has(n))
      throw new AuditQueryError(AuditQueryParameter.Outcome, 'must be 0, 4, 8 or 12 (PS3.15 EventOutcomeIndicator)');
    outcome = n as EventOutcome;
  }
  const actor = text(params, AuditQueryParameter.Actor, 256);
  const address = text(params, AuditQueryParameter.Address, 256);
  // Patient ID is LO: at most 64 characters (PS3.5 6.2).
  const patientId = text(params, AuditQueryParameter.PatientId, 64);
  const studyInstanceUid = text(params, AuditQueryParameter.StudyUid, 64, UID);
  let limit = DEFAULT_AUDIT_QUERY_LIMIT;
  const limitText = one(params, AuditQueryParameter.Limit);
  if (limitText !== undefined) {
    limit = Number(limitText);
    if (!/^\d{1,7}$/.test(limitText) || limit < 1 || limit > MAX_AUDIT_QUERY_LIMIT)
      throw new AuditQueryError(AuditQueryParameter.Limit, `must be an integer from 1 to ${MAX_AUDIT_QUERY_LIMIT}`);
  }
  const cursorText = one(params, AuditQueryParameter.Cursor);
  const format = one(params, AuditQueryParameter.Format) ?? AuditOutputFormat.Json;
  if (format !== AuditOutputFormat.Json && format !== AuditOutputFormat.Csv)
    throw new AuditQueryError(AuditQueryParameter.Format, 'must be json or csv');
  return {
    ...(from ? { from: from.text } : {}),
    ...(to ? { to: to.text } : {}),
    ...(kinds ? { kinds } : {}),
    ...(outcome !== undefined ? { outcome } : {}),
    ...(actor ? { actor } : {}),
    ...(address ? { address } : {}),
    ...(patientId ? { patientId } : {}),
    ...(studyInstanceUid ? { studyInstanceUid } : {}),
    limit,
    ...(cursorText !== undefined ? { cursor: decodeCursor(cursorText) } : {}),
    format,
  };
}

const COLUMNS = `id::text AS id, extract(epoch FROM occurred_at)::text AS occurred_epoch, kind, event_id,
  event_type_code, action_code, outcome, actor, source, destination, patient_id, study_instance_uid,
  sop_instance_uids, detail, row_hash`;

/**
 * The SQL of one query: only the filters given become predicates (a `$n IS NULL OR …` form would
 * hide the indexes from the planner). Shared verbatim with the plan test (STYLE rule 6). One row
 * more than the page is read to know whether there is a next page.
 */
export function buildAuditQuery(q: AuditQuery): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const p = (v: unknown): string => {
    values.push(v);
    return `$${values.length}`;
  };
  const where: string[] = [];
  if (q.from) where.push(`occurred_at >= ${p(q.from)}::timestamptz`);
  if (q.to) where.push(`occurred_at < ${p(q.to)}::timestamptz`);
  if (q.kinds) where.push(q.kinds.length === 1 ? `kind = ${p(q.kinds[0])}` : `kind = ANY(${p([...q.kinds])}::text[])`);
  if (q.outcome !== undefined) where.push(`outcome = ${p(q.outcome)}::smallint`);
  if (q.actor) where.push(`actor = ${p(q.actor)}`);
  if (q.address) where.push(`source = ${p(q.address)}`);
  if (q.patientId) where.push(`patient_id = ${p(q.patientId)}`);
  if (q.studyInstanceUid) where.push(`study_instance_uid = ${p(q.studyInstanceUid)}`);
  if (q.cursor) where.push(`(occurred_at, id) < (${p(q.cursor.occurredAt)}::timestamptz, ${p(q.cursor.id)}::bigint)`);
  // ORDER BY names the table's columns: a bare `id` would be the text output column `id::text AS id`
  // (an ORDER BY name means an output column first), which sorts '9' above '10' and loses a row at a
  // page boundary whenever two events share occurred_at (PGlite's clock ticks in milliseconds).
  const text = `SELECT ${COLUMNS} FROM audit_events${where.length ? ` WHERE ${where.join(' AND ')}` : ''}
ORDER BY audit_events.occurred_at DESC, audit_events.id DESC LIMIT ${p(q.limit + 1)}`;
  return { text, values };
}

interface QueryRow extends AuditEventColumns {
  occurred_epoch: string;
  detail: Record<string, unknown>;
  row_hash: string;
}

/** Who asked: the participant of the Audit Log Used event (user and network address). */
export interface AuditRequester {
  readonly actor: string;
  readonly address?: string;
}

/** The filters as the Audit Log Used event records them: values, never PHI (patient ID has its column). */
function queryDetail(q: AuditQuery): Record<string, unknown> {
  return {
    from: q.from ?? null,
    to: q.to ?? null,
    type: q.kinds ?? null,
    outcome: q.outcome ?? null,
    actor: q.actor ?? null,
    address: q.address ?? null,
    patientIdGiven: q.patientId !== undefined,
    limit: q.limit,
    page: q.cursor ? 'next' : 'first',
    format: q.format,
  };
}

/**
 * Runs one query and records it (110101, outcome 0 with the number of events returned). A read
 * that fails is recorded with outcome 8 and its error code, then rethrown. Nothing is returned
 * unless its Audit Log Used event was written.
 */
export async function queryAuditEvents(pool: Queryable, q: AuditQuery, who: AuditRequester): Promise<AuditQueryPage> {
  const sql = buildAuditQuery(q);
  let rows: QueryRow[];
  try {
    rows = (await pool.query<QueryRow>(sql.text, sql.values)).rows;
  } catch (err: unknown) {
    await recordAuditQuery(pool, who, q, EventOutcome.SeriousFailure, { errorCode: errorCodeOf(err) }).catch(
      () => undefined,
    );
    throw err;
  }
  const more = rows.length > q.limit;
  const page = more ? rows.slice(0, q.limit) : rows;
  const events = page.map(
    (r): AuditEventRecord => ({
      ...auditEventFields(r),
      occurredAt: utcMicros(r.occurred_epoch),
      detail: r.detail,
      rowHash: r.row_hash,
    }),
  );
  const last = events[events.length - 1];
  await recordAuditQuery(pool, who, q, EventOutcome.Success, { returned: events.length });
  return {
    events,
    nextCursor: more && last ? encodeCursor({ occurredAt: last.occurredAt, id: String(last.id) }) : null,
  };
}

function recordAuditQuery(
  pool: Queryable,
  who: AuditRequester,
  q: AuditQuery,
  outcome: EventOutcome,
  extra: Record<string, unknown>,
): Promise<unknown> {
  return recordAudit(pool, {
    kind: AuditEventKind.AuditQuery,
    outcome,
    actor: who.actor,
    ...(who.address ? { source: who.address } : {}),
    ...(q.patientId ? { patientId: q.patientId } : {}),
    ...(q.studyInstanceUid ? { studyInstanceUid: q.studyInstanceUid } : {}),
    detail: { ...queryDetail(q), ...extra },
  });
}

/**
 * A query refused before it ran (a bad filter) is still an attempt to use the audit log: recorded
 * with outcome 8, the parameter named, and none of the values (they may be anything).
 */
export function recordRefusedAuditQuery(pool: Queryable, who: AuditRequester, err: AuditQueryError): Promise<unknown> {
  return recordAudit(pool, {
    kind: AuditEventKind.AuditQuery,
    outcome: EventOutcome.SeriousFailure,
    actor: who.actor,
    ...(who.address ? { source: who.address } : {}),
    detail: { errorCode: err.code, field: err.field },
  });
}

export const CSV_COLUMNS = [
  'id',
  'occurredAt',
  'kind',
  'eventId',
  'eventTypeCode',
  'actionCode',
  'outcome',
  'actor',
  'source',
  'destination',
  'patientId',
  'studyInstanceUid',
  'sopInstanceUids',
  'detail',
  'rowHash',
] as const;

/**
 * One RFC 4180 field. A text cell that a spreadsheet would run as a formula (= + - @, tab, CR) gets
 * a leading apostrophe (OWASP "CSV injection"): AE titles and user names come from callers.
 */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** CSV with a header row, CRLF line ends (RFC 4180); SOP instance UIDs joined with `\` (PS3.5 VM). */
export function auditEventsCsv(events: readonly AuditEventRecord[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const e of events)
    lines.push(
      CSV_COLUMNS.map((c) => csvField(c === 'sopInstanceUids' ? (e.sopInstanceUids?.join('\\') ?? null) : e[c])).join(
        ',',
      ),
    );
  return `${lines.join('\r\n')}\r\n`;
}
