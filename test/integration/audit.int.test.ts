import { AUDIT_EVENTS, AuditEventKind } from '../../src/audit/audit-codes.js';
import { listAudit, recordAudit, verifyAuditChain } from '../../src/audit/audit-log.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(60_000);

// [REQ-AUD-01] Append-only, hash-chained audit trail with DICOM PS3.15 A.5 event codes.
describe(`audit trail (${backendName()})`, () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await testDatabase();
  });
  afterEach(async () => {
    await db.close();
  });

  async function seed(n: number): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const { id } = await recordAudit(db.pool, {
        kind: 'instance-received',
        actor: 'STORESCU',
        source: '10.0.0.7',
        studyInstanceUid: '1.2.3',
        sopInstanceUids: [`1.2.3.${i}`],
        detail: { via: 'stow-rs', sizeBytes: 100 + i },
      });
      ids.push(id);
    }
    return ids;
  }

  it('records each kind with its DICOM event ID, action and type code, and the chain verifies', async () => {
    for (const kind of Object.values(AuditEventKind)) {
      await recordAudit(db.pool, { kind, actor: 'radscribe' });
    }
    const { rows } = await db.pool.query<{
      kind: AuditEventKind;
      event_id: string;
      action_code: string;
      event_type_code: string | null;
    }>('SELECT kind, event_id, action_code, event_type_code FROM audit_events ORDER BY id');
    expect(rows.map((r) => r.kind)).toEqual(Object.values(AuditEventKind));
    for (const r of rows) {
      expect(r.event_id).toBe(AUDIT_EVENTS[r.kind].eventId.code);
      expect(r.action_code).toBe(AUDIT_EVENTS[r.kind].action);
      expect(r.event_type_code).toBe(AUDIT_EVENTS[r.kind].eventTypeCode?.code ?? null);
    }
    expect(rows.find((r) => r.kind === 'instance-received')?.event_id).toBe('110104');
    expect(rows.find((r) => r.kind === 'application-start')?.event_type_code).toBe('110120');
    expect(await verifyAuditChain(db.pool)).toMatchObject({ ok: true, checked: rows.length });
  });

  it('config changes of network scope use 110128, others 110131', async () => {
    await recordAudit(db.pool, { kind: 'config-change', detail: { scope: 'network', setting: 'pacs.stow.url' } });
    await recordAudit(db.pool, { kind: 'config-change', detail: { setting: 'model.path' } });
    const { rows } = await db.pool.query<{ event_type_code: string }>(
      'SELECT event_type_code FROM audit_events ORDER BY id',
    );
    expect(rows.map((r) => r.event_type_code)).toEqual(['110128', '110131']);
  });

  it('refuses UPDATE, DELETE and TRUNCATE', async () => {
    const [id] = await seed(2);
    await expect(db.pool.query(`UPDATE audit_events SET actor = 'x' WHERE id = $1`, [id])).rejects.toThrow(
      /append-only/,
    );
    await expect(db.pool.query('DELETE FROM audit_events WHERE id = $1', [id])).rejects.toThrow(/append-only/);
    await expect(db.pool.query('TRUNCATE audit_events')).rejects.toThrow(/append-only/);
    expect(await verifyAuditChain(db.pool)).toMatchObject({ ok: true, checked: 2 });
  });

  it('detects a row edited with the triggers disabled, at that row', async () => {
    const ids = await seed(4);
    await db.pool.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
    await db.pool.query(`UPDATE audit_events SET detail = '{"via":"c-store"}' WHERE id = $1`, [ids[2]]);
    await db.pool.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
    expect(await verifyAuditChain(db.pool)).toMatchObject({ ok: false, checked: 3, firstBrokenId: ids[2] });
  });

  it('detects a deleted row at its successor, even if the deleter recomputed nothing', async () => {
    const ids = await seed(4);
    await db.pool.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
    await db.pool.query('DELETE FROM audit_events WHERE id = $1', [ids[1]]);
    await db.pool.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
    const report = await verifyAuditChain(db.pool);
    expect(report.ok).toBe(false);
    expect(report.firstBrokenId).toBe(ids[2]);
  });

  it('concurrent writers still produce one valid chain', async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        recordAudit(db.pool, { kind: 'remote-query', actor: `node-${i}`, detail: { matches: i } }),
      ),
    );
    expect(await verifyAuditChain(db.pool)).toMatchObject({ ok: true, checked: 20 });
  });

  it('listAudit filters, and reading the trail is itself audited (110101)', async () => {
    await seed(3);
    await recordAudit(db.pool, { kind: 'remote-query', actor: 'qido' });
    const got = await listAudit(db.pool, { kind: 'instance-received', limit: 2 }, 'compliance-officer');
    expect(got).toHaveLength(2);
    expect(got.every((e) => e.kind === 'instance-received' && e.eventId === '110104')).toBe(true);
    expect(got[0]!.id).toBeGreaterThan(got[1]!.id);
    const reads = await listAudit(db.pool, { kind: 'audit-query', limit: 10 }, 'compliance-officer');
    // Two reads so far (this one included), both attributed to the requester.
    expect(reads).toHaveLength(2);
    expect(reads.every((e) => e.actor === 'compliance-officer' && e.eventId === '110101')).toBe(true);
    expect(reads[1]?.detail).toMatchObject({ kind: 'instance-received', limit: 2 });
    const none = await listAudit(db.pool, { since: new Date(Date.now() + 3_600_000), limit: 10 }, 'x');
    expect(none).toEqual([]);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  it('never stores PHI-named detail fields', async () => {
    await recordAudit(db.pool, { kind: 'inference-run', detail: { PatientName: 'Doe^Jane', tokens: 12 } });
    const { rows } = await db.pool.query<{ detail: Record<string, unknown> }>('SELECT detail FROM audit_events');
    expect(rows[0]?.detail).toEqual({ PatientName: '[redacted]', tokens: 12 });
  });
});
