import express from 'express';
import { errorHandler } from '../../src/app.js';
import { AuditEventKind, EventOutcome } from '../../src/audit/audit-codes.js';
import { recordAudit } from '../../src/audit/audit-log.js';
import { CSV_COLUMNS } from '../../src/audit/audit-query.js';
import { createAuditRouter } from '../../src/audit/audit-router.js';
import { verifyAuditChain } from '../../src/audit/audit-verify.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { startTestServer, type TestHttpServer } from '../support/http.js';

jest.setTimeout(120_000);

interface Page {
  events: { id: number; kind: string; outcome: number; actor: string | null; patientId: string | null }[];
  nextCursor: string | null;
}

// [REQ-AUD-03] Queries for compliance staff (issue 12): filters, keyset pagination, JSON and CSV,
// 400 naming the bad filter, and every query audited as 110101 Audit Log Used.
describe(`GET /api/audit/events (${backendName()})`, () => {
  let db: TestDatabase;
  let server: TestHttpServer;

  beforeAll(async () => {
    db = await testDatabase({ poolSize: 2 });
    server = await startTestServer((app) => {
      app.use('/api', createAuditRouter({ pool: db.pool }));
      app.use(errorHandler());
    });
    // 30 events: 3 kinds, failures every 5th, 3 actors, 2 addresses, 3 patients, 2 studies.
    for (let i = 0; i < 30; i++)
      await recordAudit(db.pool, {
        kind: [AuditEventKind.InstanceReceived, AuditEventKind.InferenceRun, AuditEventKind.SrExported][
          i % 3
        ] as AuditEventKind,
        outcome: i % 5 === 0 ? EventOutcome.SeriousFailure : EventOutcome.Success,
        actor: ['STORESCU', 'MODALITY_2', 'radscribe'][i % 3] as string,
        source: i % 2 ? '10.0.0.7' : '10.0.0.8',
        patientId: `PAT-${i % 3}`,
        studyInstanceUid: i < 15 ? '1.2.3' : '1.2.4',
        sopInstanceUids: [`1.2.3.${i}`, `1.2.3.${i}.1`],
        detail: { n: i },
      });
  });
  afterAll(async () => {
    await server?.close();
    await db?.close();
  });

  const get = (q: string, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/api/audit/events${q}`, { headers });

  async function lastAuditQuery(): Promise<{
    outcome: number;
    detail: Record<string, unknown>;
    patient_id: string | null;
  }> {
    const { rows } = await db.pool.query(
      `SELECT outcome, detail, patient_id FROM audit_events WHERE kind = 'audit-query' ORDER BY id DESC LIMIT 1`,
    );
    return rows[0];
  }

  it.each([
    ['type=inference-run', (e: Page['events'][number]) => e.kind === 'inference-run', 10],
    ['type=110104', (e: Page['events'][number]) => e.kind === 'instance-received', 10],
    ['outcome=8', (e: Page['events'][number]) => e.outcome === 8, 6],
    ['actor=MODALITY_2', (e: Page['events'][number]) => e.actor === 'MODALITY_2', 10],
    ['address=10.0.0.7', () => true, 15],
    ['patientId=PAT-1', (e: Page['events'][number]) => e.patientId === 'PAT-1', 10],
    ['studyUid=1.2.4&type=sr-exported', (e: Page['events'][number]) => e.kind === 'sr-exported', 5],
  ])('filters %s', async (q, pred, n) => {
    const res = await get(`?${q}&limit=1000`);
    expect(res.status).toBe(200);
    const page = (await res.json()) as Page;
    expect(page.events).toHaveLength(n);
    expect(page.events.every(pred)).toBe(true);
    expect(page.nextCursor).toBeNull();
  });

  it('filters a time range', async () => {
    // Microseconds matter: several events fall in one millisecond.
    const { rows } = await db.pool.query<{ at: string }>(
      `SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
       FROM audit_events WHERE kind <> 'audit-query' ORDER BY id LIMIT 1 OFFSET 10`,
    );
    const from = rows[0]?.at as string;
    // On PGlite the clock ticks in milliseconds, so the 11th event may share its instant with the 10th:
    // the expected set is what the database itself holds at or after `from`, at least the last 20.
    const expected = await db.pool.query<{ id: string }>(
      `SELECT id::text AS id FROM audit_events
       WHERE kind IN ('instance-received','inference-run','sr-exported') AND occurred_at >= $1::timestamptz
       ORDER BY audit_events.id DESC`,
      [from],
    );
    const all = (await (
      await get(`?from=${from}&type=instance-received,inference-run,sr-exported&limit=1000`)
    ).json()) as Page;
    expect(all.events.map((e) => String(e.id))).toEqual(expected.rows.map((r) => r.id));
    expect(all.events.length).toBeGreaterThanOrEqual(20);
    expect(all.events.length).toBeLessThan(30);
    const none = (await (await get('?to=2000-01-01')).json()) as Page;
    expect(none.events).toEqual([]);
  });

  it('pages newest first with a cursor until the end, without repeats or gaps, and says so in Link', async () => {
    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(
        `?type=instance-received,inference-run,sr-exported&limit=7${cursor ? `&cursor=${cursor}` : ''}`,
      );
      const page = (await res.json()) as Page;
      if (page.nextCursor) expect(res.headers.get('link')).toMatch(/cursor=.*rel="next"/);
      else expect(res.headers.get('link')).toBeNull();
      seen.push(...page.events.map((e) => e.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(5);
    expect(seen).toHaveLength(30);
    expect([...seen].sort((a, b) => b - a)).toEqual(seen);
    expect(new Set(seen).size).toBe(30);
  });

  it('answers CSV for format=csv and for Accept: text/csv', async () => {
    for (const res of [
      await get('?patientId=PAT-2&type=sr-exported&format=csv'),
      await get('?patientId=PAT-2&type=sr-exported', { accept: 'text/csv' }),
    ]) {
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
      const lines = (await res.text()).split('\r\n');
      expect(lines[0]).toBe(CSV_COLUMNS.join(','));
      expect(lines).toHaveLength(10 + 2); // header, 10 rows, final CRLF
      expect(lines[1]).toContain('PAT-2');
      expect(lines[1]).toMatch(/1\.2\.3\.\d+\\1\.2\.3\.\d+\.1/);
      expect(lines[1]).toMatch(/"\{""n"":\d+\}"/);
    }
  });

  it('records each query as Audit Log Used with the filters and the patient as participant', async () => {
    await get('?patientId=PAT-0&outcome=0&limit=3');
    const ev = await lastAuditQuery();
    expect(ev.outcome).toBe(0);
    expect(ev.patient_id).toBe('PAT-0');
    expect(ev.detail).toMatchObject({ outcome: 0, limit: 3, returned: 3, patientIdGiven: true, format: 'json' });
    expect(JSON.stringify(ev.detail)).not.toContain('PAT-0');
  });

  it.each([
    ['?from=yesterday', 'from'],
    ['?from=2026-02-30T00:00:00Z&to=2026-01-01', 'from'],
    ['?to=2026-01-01T24:00:00Z', 'to'],
    ['?from=2026-01-01T08:00:00%2B16:00', 'from'],
    ['?from=2026-02-01&to=2026-01-01', 'to'],
    ['?type=nonsense', 'type'],
    ['?type=110999', 'type'],
    ['?outcome=3', 'outcome'],
    ['?outcome=', 'outcome'],
    ['?limit=0', 'limit'],
    ['?limit=abc', 'limit'],
    ['?limit=100000', 'limit'],
    ['?cursor=garbage', 'cursor'],
    ['?studyUid=1.2.abc', 'studyUid'],
    ['?patientId=x&patientId=y', 'patientId'],
    ['?format=xml', 'format'],
    ['?patient=PAT-1', 'patient'],
    [`?actor=${'a'.repeat(300)}`, 'actor'],
    ['?address=%01x', 'address'],
  ])('refuses %s with 400 naming %s, and audits the refusal', async (q, field) => {
    const before = (await db.pool.query('SELECT count(*)::int AS n FROM audit_events')).rows[0].n as number;
    const res = await get(q);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('request-invalid');
    expect(body.message).toContain(`query parameter ${field}:`);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM audit_events')).rows[0].n).toBe(before + 1);
    const ev = await lastAuditQuery();
    expect(ev.outcome).toBe(8);
    expect(ev.detail).toEqual({ errorCode: 'request-invalid', field });
  });

  it('returns no events when their Audit Log Used record cannot be written', async () => {
    // The audit store refuses audit-query rows (as a broken database would); the read itself works.
    await db.pool.query(`
      CREATE FUNCTION refuse_audit_query() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.kind = 'audit-query' THEN RAISE EXCEPTION 'disk full' USING ERRCODE = '53100'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_audit_query BEFORE INSERT ON audit_events
        FOR EACH ROW EXECUTE FUNCTION refuse_audit_query();`);
    try {
      const res = await get('?patientId=PAT-1');
      expect(res.status).toBeGreaterThanOrEqual(500);
      const text = await res.text();
      expect(text).not.toContain('PAT-1');
      expect(JSON.parse(text)).not.toHaveProperty('events');
    } finally {
      await db.pool.query('DROP TRIGGER refuse_audit_query ON audit_events; DROP FUNCTION refuse_audit_query()');
    }
  });

  it('leaves a chain that verifies', async () => {
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });
});

describe('audit router is mountable behind another middleware', () => {
  it('takes the requester from the caller (e.g. an authentication middleware)', async () => {
    const db = await testDatabase({ poolSize: 2 });
    const server = await startTestServer((app) => {
      app.use(
        '/api',
        express
          .Router()
          .use(
            createAuditRouter({ pool: db.pool, requester: () => ({ actor: 'auditor:alice', address: '192.0.2.1' }) }),
          ),
      );
      app.use(errorHandler());
    });
    try {
      expect((await fetch(`${server.url}/api/audit/events`)).status).toBe(200);
      const { rows } = await db.pool.query(`SELECT actor, source FROM audit_events WHERE kind = 'audit-query'`);
      expect(rows).toEqual([{ actor: 'auditor:alice', source: '192.0.2.1' }]);
    } finally {
      await server.close();
      await db.close();
    }
  });
});
