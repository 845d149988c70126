import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditEventKind } from '../../src/audit/audit-codes.js';
import { recordAudit } from '../../src/audit/audit-log.js';
import { migrate } from '../../src/db/migrate.js';
import { openDatabase } from '../../src/db/pool.js';

jest.setTimeout(300_000);

const BIN = path.join(__dirname, '../../bin/radscribe');

/**
 * [REQ-AUD-06] The operator's path through audit retention with bin/radscribe on the embedded
 * database: keygen, `audit retention run --dry-run`, `audit retention run`, `audit archive verify`,
 * `audit verify --archives`; then an edited archive refused by both. The events are made
 * old as a superuser would (occurred_at moved back 30 days, the chain recomputed with the real
 * canonical function), since retention acts on age.
 */
describe('audit retention end to end (bin/radscribe, embedded database)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-audit-retention-cli-'));
  const dataDir = path.join(dir, 'data');
  const priv = path.join(dir, 'anchor.key');
  const pub = path.join(dir, 'anchor.pub');
  const archive = path.join(dir, 'archive');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function run(args: string[]) {
    const { DATABASE_URL: _omit, ...rest } = process.env;
    return spawnSync(BIN, args, {
      env: {
        ...rest,
        RADSCRIBE_DATA_DIR: dataDir,
        RADSCRIBE_AUDIT_ANCHOR_PRIVATE_KEY_FILE: priv,
        RADSCRIBE_AUDIT_ANCHOR_PUBLIC_KEY_FILE: pub,
        RADSCRIBE_AUDIT_RETENTION_PERIOD_DAYS: '7',
        RADSCRIBE_AUDIT_RETENTION_ARCHIVE_DIRECTORY: archive,
        RADSCRIBE_AUDIT_RETENTION_SEGMENT_ROWS: '10',
      },
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  it('dry run, run, archive verify, verify with the archives, tampered archive', async () => {
    expect(run(['audit', 'keygen']).status).toBe(0);
    const db = await openDatabase({ dataDir, poolSize: 1 });
    try {
      await migrate(db.pool);
      for (let i = 0; i < 35; i++)
        await recordAudit(db.pool, { kind: AuditEventKind.InstanceReceived, actor: 'STORESCU', detail: { i } });
      await db.pool.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
      await db.pool.query(`UPDATE audit_events SET occurred_at = occurred_at - interval '30 days'`);
      await db.pool.query(`DO $$
DECLARE r record; prev text;
BEGIN
  FOR r IN SELECT id, chain_lane FROM audit_events ORDER BY id LOOP
    SELECT p.row_hash INTO prev FROM audit_events p WHERE p.chain_lane = r.chain_lane AND p.id < r.id
      ORDER BY p.id DESC LIMIT 1;
    UPDATE audit_events a SET prev_hash = coalesce(prev, repeat('0', 64)) WHERE a.id = r.id;
    UPDATE audit_events a SET row_hash = encode(sha256(convert_to(a.prev_hash || audit_event_canonical(a), 'UTF8')), 'hex')
      WHERE a.id = r.id;
  END LOOP;
END $$`);
      await db.pool.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
    } finally {
      await db.close();
    }
    const dry = run(['audit', 'retention', 'run', '--dry-run']);
    expect(dry.status).toBe(0);
    expect(dry.stdout).toContain('would drop segment (0, 10]: 10 events in 1 lane(s)');
    expect(dry.stdout).toMatch(/dry run: would drop 3 segment\(s\), 30 events older than .*; stopped: head-segment/);

    const real = run(['audit', 'retention', 'run']);
    expect(real.status).toBe(0);
    expect(real.stdout).toMatch(
      /dropped segment \(20, 30\]: 10 events in 1 lane\(s\), archive .*audit-archive-000000000020-000000000030\.manifest, checkpoint event \d+/,
    );
    const manifests = readdirSync(archive).filter((f) => f.endsWith('.manifest'));
    expect(manifests).toHaveLength(3);

    const file = path.join(archive, manifests[0] as string);
    const ok = run(['audit', 'archive', 'verify', file]);
    expect(ok.stdout).toMatch(
      /^archive intact: .*segment \(0, 10\], 10 events in 1 lane\(s\), signature valid, sha256 [0-9a-f]{64}/,
    );
    expect(ok.status).toBe(0);

    const verify = run(['audit', 'verify', '--archives', archive]);
    expect(verify.stdout).toMatch(
      /^audit chain intact: 8 events in 1 lane, last event 38; events up to 30 archived and dropped by retention \(3 checkpoint\(s\), 3 archive\(s\) verified\)/,
    );
    expect(verify.status).toBe(0);

    const rows = file.replace(/\.manifest$/, '.ndjson');
    writeFileSync(rows, readFileSync(rows, 'utf8').replace('"STORESCU"', '"SOMEONE"'));
    const bad = run(['audit', 'archive', 'verify', file]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(
      /^ARCHIVE BROKEN: .*\n {2}hash-mismatch: .*line 1: event 1 .*row_hash does not match its columns \(edited\)/,
    );
    const caught = run(['audit', 'verify', '--archives', archive]);
    expect(caught.status).toBe(1);
    expect(caught.stdout).toMatch(
      /archive-invalid: archive .*audit-archive-000000000000-000000000010\.manifest: hash-mismatch/,
    );
    process.stdout.write(`audit verify --archives after an archive line was edited:\n${caught.stdout}`);
  });
});
