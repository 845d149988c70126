import type { PoolClient } from 'pg';
import { AuditEventKind } from '../../src/audit/audit-codes.js';
import { type AuditQuery, parseAuditQuery } from '../../src/audit/audit-query.js';

/**
 * A populated audit trail and the typical compliance queries on it, shared by the query-plan test
 * (test/integration/audit-query-plan.int.test.ts, 200 000 rows) and the p95 benchmark
 * (bench/audit-query.bench.ts, 10 million rows): the same rows and the same queries at both sizes.
 */

/** One event every 10 s from 2026-01-01: 200 000 rows span ~23 days, 10 million ~3.2 years. */
export const TRAIL_START = '2026-01-01 00:00:00Z';

/**
 * Inserts rows `from`..`to` (ids) with dummy hashes: the plans and timings do not depend on them,
 * and the chain trigger would make every row a single-row append. The caller disables the user
 * triggers around it (a superuser or the owner) and runs ANALYZE after.
 */
export async function insertTrailRows(c: PoolClient, from: number, to: number): Promise<void> {
  await c.query(
    `INSERT INTO audit_events (id, occurred_at, kind, event_id, action_code, outcome, actor, source, patient_id,
                               study_instance_uid, detail, prev_hash, row_hash)
     SELECT g, timestamptz '${TRAIL_START}' + g * interval '10 seconds',
            ($3::text[])[1 + g % array_length($3::text[], 1)], '110104', 'C',
            CASE WHEN g % 50 = 0 THEN 8 WHEN g % 97 = 0 THEN 4 ELSE 0 END,
            'AE_' || (g % 500), '10.0.' || (g % 250) || '.' || (g % 7), 'PAT-' || (g % 20000),
            '1.2.826.0.1.' || (g % 40000), '{}', repeat('0', 64), repeat('0', 64)
     FROM generate_series($1::bigint, $2::bigint) g`,
    [from, to, Object.values(AuditEventKind)],
  );
}

const q = (params: Record<string, string>): AuditQuery => parseAuditQuery(params);
const cursor = (at: string, id: number) => Buffer.from(JSON.stringify([at, String(id)])).toString('base64url');

/**
 * [name, the index (or indexes) the planner may choose, query]. For a common event type a
 * backward walk of the time index, filtering, reaches a page sooner than the kind index does;
 * either is an index range scan.
 */
export const TYPICAL_QUERIES: readonly [string, string, AuditQuery][] = [
  ['newest page', 'audit_events_time_idx', q({})],
  ['one day', 'audit_events_time_idx', q({ from: '2026-01-10T00:00:00Z', to: '2026-01-11T00:00:00Z' })],
  [
    'event type in a week',
    'audit_events_kind_time_idx',
    q({ type: 'audit-query', from: '2026-01-05', to: '2026-01-12' }),
  ],
  ['event ID (several kinds)', 'audit_events_kind_time_idx|audit_events_time_idx', q({ type: '110113' })],
  ['failures in a week', 'audit_events_outcome_time_idx', q({ outcome: '8', from: '2026-01-05', to: '2026-01-12' })],
  ['one AE title', 'audit_events_actor_time_idx', q({ actor: 'AE_42' })],
  ['one network address', 'audit_events_source_time_idx', q({ address: '10.0.42.0' })],
  ['one patient', 'audit_events_patient_time_idx', q({ patientId: 'PAT-4242' })],
  ['one study', 'audit_events_study_time_idx', q({ studyUid: '1.2.826.0.1.4242' })],
  [
    'next page of an event type',
    'audit_events_kind_time_idx|audit_events_time_idx',
    q({ type: 'remote-query', cursor: cursor('2026-01-15T00:00:00.000000Z', 100_000) }),
  ],
];

export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

export function planNodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(planNodes)];
}
