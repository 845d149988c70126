import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { type LoadedAnchor, readAnchors } from '../../src/audit/audit-anchor.js';
import { AuditAnchorer } from '../../src/audit/audit-anchorer.js';
import { ArchiveProblemKind, manifestFilesIn, parseManifest, verifyArchive } from '../../src/audit/audit-archive.js';
import { AUDIT_EVENTS, AuditEventKind } from '../../src/audit/audit-codes.js';
import { recordAudit } from '../../src/audit/audit-log.js';
import {
  AuditRetentionSweeper,
  RetentionStop,
  readRetentionCheckpoints,
  runAuditRetention,
} from '../../src/audit/audit-retention.js';
import { ChainProblemKind, verifyAuditChain } from '../../src/audit/audit-verify.js';
import { formatVerifyReport } from '../../src/cli/audit.js';
import { loadConfig } from '../../src/config.js';
import type { Database } from '../../src/db/pool.js';
import { auditRetentionService } from '../../src/services/audit-retention-service.js';
import { Resource } from '../../src/services/service.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { waitFor } from '../support/gateway.js';

jest.setTimeout(180_000);

const DAY_MS = 86_400_000;
const SEGMENT = 20;

/**
 * [REQ-AUD-06] Audit retention (issue 12 "Retention: a configured period; old partitions are
 * exported (signed) and verified before they are dropped, without breaking verification of what
 * remains"). The test connection is a superuser on both backends: the attacker of the tamper cases.
 * The archives are also checked without RadScribe: `openssl pkeyutl -verify` of the manifest's
 * Ed25519 signature and `sha256sum` of the rows file.
 */
describe(`audit retention (${backendName()})`, () => {
  let db: TestDatabase;
  let dir: string;
  let archiveDir: string;
  let anchorDir: string;
  let publicKeyFile: string;
  const keys = generateKeyPairSync('ed25519');

  beforeEach(async () => {
    db = await testDatabase({ poolSize: 2 });
    dir = mkdtempSync(path.join(tmpdir(), 'radscribe-audit-retention-'));
    archiveDir = path.join(dir, 'archive');
    anchorDir = path.join(dir, 'anchors');
    publicKeyFile = path.join(dir, 'anchor.pub');
    writeFileSync(publicKeyFile, keys.publicKey.export({ type: 'spki', format: 'pem' }));
  });
  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function seed(n: number): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < n; i++)
      ids.push(
        (
          await recordAudit(db.pool, {
            kind: AuditEventKind.InstanceReceived,
            actor: 'STORESCU',
            source: '10.0.0.7',
            patientId: `PAT-${i % 3}`,
            studyInstanceUid: '1.2.3',
            sopInstanceUids: [`1.2.3.${i}`],
            detail: { via: 'dimse', sizeBytes: 100 + i, note: 'q"uote\\ and ü' },
          })
        ).id,
      );
    return ids;
  }

  const anchorer = () =>
    new AuditAnchorer({ pool: db.pool, directory: anchorDir, intervalMs: 3_600_000, privateKey: keys.privateKey });
  const anchors = (): LoadedAnchor[] => readAnchors(anchorDir, keys.publicKey);
  const retention = (extra: { dryRun?: boolean; maxSegments?: number } = {}) =>
    runAuditRetention({
      pool: db.pool,
      periodDays: 1,
      archiveDirectory: archiveDir,
      segmentRows: SEGMENT,
      privateKey: keys.privateKey,
      actor: 'test-operator',
      // Ten days on: every event written by the test is older than the one-day period.
      now: () => Date.now() + 10 * DAY_MS,
      ...extra,
    });

  async function asSuperuser(fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    const c = await db.pool.connect();
    try {
      await c.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
      await fn(c);
      await c.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
    } finally {
      c.release();
    }
  }

  const count = async (where = 'true'): Promise<number> =>
    Number((await db.pool.query(`SELECT count(*) AS n FROM audit_events WHERE ${where}`)).rows[0].n);

  /** 105 events, anchored after 30 and 60 of them: five full segments of 20 and the head segment. */
  async function fill(): Promise<void> {
    await seed(30);
    await anchorer().anchorNow();
    await seed(30);
    await anchorer().anchorNow();
    await seed(45);
  }

  it('exports, verifies and drops the old segments; what remains verifies, with and without anchors', async () => {
    await fill();
    const before = await count();
    expect(before).toBe(105);

    const dry = await retention({ dryRun: true });
    expect(dry.segments.map((s) => [s.fromId, s.toId, s.rows])).toEqual([
      [0, 20, 20],
      [20, 40, 20],
      [40, 60, 20],
      [60, 80, 20],
      [80, 100, 20],
    ]);
    expect(dry.stoppedBecause).toBe(RetentionStop.HeadSegment);
    expect(await count()).toBe(before);

    const report = await retention();
    expect(report.segments).toHaveLength(5);
    expect(report.stoppedBecause).toBe(RetentionStop.HeadSegment);
    // 100 events dropped, one checkpoint event per segment added.
    expect(await count('id <= 100')).toBe(0);
    expect(await count()).toBe(5 + 5);
    const { checkpoints } = await readRetentionCheckpoints(db.pool);
    expect(checkpoints.map((c) => [c.fromId, c.toId, c.rows])).toEqual(
      dry.segments.map((s) => [s.fromId, s.toId, s.rows]),
    );
    // A second run has nothing left to drop: the head segment is never dropped.
    expect((await retention()).segments).toHaveLength(0);

    // Each archive, checked without RadScribe: the signature with openssl, the rows file with sha256sum.
    const manifests = manifestFilesIn(readdirSync(archiveDir));
    expect(manifests).toHaveLength(5);
    for (const name of manifests) {
      const file = path.join(archiveDir, name);
      const m = parseManifest(readFileSync(file, 'utf8'));
      if (!m) throw new Error(`${name} is not a manifest`);
      const ossl = spawnSync(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-inkey', publicKeyFile, '-rawin', '-in', file, '-sigfile', `${file}.sig`],
        { encoding: 'utf8' },
      );
      expect(ossl.stdout).toContain('Signature Verified Successfully');
      expect(ossl.status).toBe(0);
      const sum = execFileSync('sha256sum', [path.join(archiveDir, m.file)], { encoding: 'utf8' }).split(' ')[0];
      expect(sum).toBe(m.sha256);
      expect(readFileSync(path.join(archiveDir, m.file), 'utf8').trimEnd().split('\n')).toHaveLength(m.rows);
      expect((await verifyArchive(file, keys.publicKey)).ok).toBe(true);
    }

    // The checkpoint event is the one the mapping names (written by SQL, so compared here).
    const { rows } = await db.pool.query(
      `SELECT event_id, event_type_code, action_code, actor FROM audit_events WHERE kind = 'audit-retention' LIMIT 1`,
    );
    const def = AUDIT_EVENTS[AuditEventKind.AuditRetention];
    expect(rows[0]).toEqual({
      event_id: def.eventId.code,
      event_type_code: def.eventTypeCode?.code,
      action_code: def.action,
      actor: 'test-operator',
    });

    // What remains verifies: without anchors, with the anchors taken before the drop (their heads
    // are in dropped segments: checked against the checkpoints, noted as covered by the archives),
    // and with the archives (the heads found in their rows).
    const plain = await verifyAuditChain(db.pool);
    expect(plain).toMatchObject({ ok: true, checkpoints: 5, droppedThrough: 100, problems: [] });
    await anchorer().anchorNow();
    const anchored = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(anchored.problems).toEqual([]);
    expect(anchored.anchorsChecked).toBe(3);
    expect(anchored.notes.join('\n')).toMatch(/anchor\(s\) with heads in segment \(20, 40\] .*covered by the archive/);
    expect(formatVerifyReport(anchored)).toMatch(
      /^audit chain intact: 10 events in \d+ lanes?, last event 110; events up to 100 archived and dropped by retention \(5 checkpoint\(s\)\); 3 anchor\(s\) verified\nnote: /,
    );
    const full = await verifyAuditChain(db.pool, {
      anchors: anchors(),
      archives: { directory: archiveDir, publicKey: keys.publicKey },
    });
    expect(full).toMatchObject({ ok: true, archivesChecked: 5, notes: [] });

    // The chain goes on after the drop, and anchors written now count the dropped events too.
    await seed(3);
    await anchorer().anchorNow();
    expect((await verifyAuditChain(db.pool, { anchors: anchors() })).problems).toEqual([]);
  });

  it('the application role can neither delete nor drop a segment that does not match its archive', async () => {
    await seed(45);
    const c = await db.pool.connect();
    try {
      await c.query('SET ROLE radscribe_app');
      for (const sql of [
        'DELETE FROM audit_events WHERE id <= 20',
        'TRUNCATE audit_events',
        'DELETE FROM audit_lane_base',
      ])
        await expect(c.query(sql)).rejects.toThrow(/permission denied/);
      const forged = [
        { lane: 0, count: 20, firstId: 1, lastId: 20, prevHash: '0'.repeat(64), headHash: 'f'.repeat(64) },
      ];
      await expect(
        c.query('SELECT audit_retention_drop(0, 20, $1::jsonb, $2::jsonb, $3)', [JSON.stringify(forged), '{}', 'x']),
      ).rejects.toThrow(/does not match its archive/);
      await expect(
        c.query('SELECT audit_retention_drop(20, 40, $1::jsonb, $2::jsonb, $3)', [JSON.stringify(forged), '{}', 'x']),
      ).rejects.toThrow(/is not the oldest left/);
      await expect(
        c.query('SELECT audit_retention_drop(0, 60, $1::jsonb, $2::jsonb, $3)', ['[]', '{}', 'x']),
      ).rejects.toThrow(/holds the newest event/);
    } finally {
      await c.query('RESET ROLE');
      c.release();
    }
    expect(await count()).toBe(45);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  it('never drops what an ATNA destination has not been sent yet', async () => {
    await seed(45);
    // The exporter's cursor (migration 0012): the repository has the first 25 events.
    await db.pool.query(`INSERT INTO audit_export_cursor (destination, last_id) VALUES ('syslog-tls://arr:6514', 25)`);
    const r = await retention();
    expect(r.segments.map((s) => s.toId)).toEqual([20]);
    expect(r.stoppedBecause).toBe(RetentionStop.NotExported);
    await expect(
      db.pool.query('SELECT audit_retention_drop(20, 40, $1::jsonb, $2::jsonb, $3)', ['[]', '{}', 'x']),
    ).rejects.toThrow(/is not yet exported to syslog-tls:\/\/arr:6514/);
    expect(await count('id > 20 AND id <= 40')).toBe(20);
    await db.pool.query(`UPDATE audit_export_cursor SET last_id = 45`);
    expect((await retention()).segments.map((s) => s.toId)).toEqual([40]);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  it('catches an edited remaining event', async () => {
    await fill();
    await retention();
    await asSuperuser(async (c) => {
      await c.query(`UPDATE audit_events SET actor = 'EVIL' WHERE id = 102`);
    });
    const r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.HashMismatch, eventId: 102 });
  });

  it('catches a deleted checkpoint', async () => {
    await fill();
    await retention();
    const last = (await readRetentionCheckpoints(db.pool)).checkpoints.at(-1);
    await asSuperuser(async (c) => {
      await c.query('DELETE FROM audit_events WHERE id = $1', [last?.eventId]);
    });
    const r = await verifyAuditChain(db.pool);
    expect(r.ok).toBe(false);
    expect(r.problems[0]?.kind).toBe(ChainProblemKind.LinkBroken);
    expect(r.problems[0]?.eventId).toBe(101);
    expect(r.problems[0]?.message).toMatch(
      /base hash retention checkpoint event \d+ recorded .* events after the archived segment were deleted/,
    );

    await asSuperuser(async (c) => {
      await c.query(`DELETE FROM audit_events WHERE kind = 'audit-retention'`);
    });
    const none = await verifyAuditChain(db.pool);
    expect(none.problems[0]).toMatchObject({ kind: ChainProblemKind.LinkBroken, eventId: 101 });
    expect(none.problems[0]?.message).toContain('no retention checkpoint covers it');
  });

  it('catches an edited checkpoint', async () => {
    await fill();
    await retention();
    const first = (await readRetentionCheckpoints(db.pool)).checkpoints[0];
    await asSuperuser(async (c) => {
      await c.query(`UPDATE audit_events SET detail = jsonb_set(detail, '{rows}', '19') WHERE id = $1`, [
        first?.eventId,
      ]);
    });
    const r = await verifyAuditChain(db.pool);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.HashMismatch, eventId: first?.eventId });
    expect(r.problems[0]?.message).toContain("retention checkpoint's row_hash does not match");
  });

  it('catches an edited archive line: its own check, sha256sum, and audit verify --archives', async () => {
    await fill();
    await retention();
    const name = manifestFilesIn(readdirSync(archiveDir))[1] as string;
    const file = path.join(archiveDir, name);
    const rowsFile = file.replace(/\.manifest$/, '.ndjson');
    const lines = readFileSync(rowsFile, 'utf8').split('\n');
    lines[4] = (lines[4] as string).replace('"STORESCU"', '"NOBODY"');
    writeFileSync(rowsFile, lines.join('\n'));

    const own = await verifyArchive(file, keys.publicKey);
    expect(own.ok).toBe(false);
    expect(own.problem).toMatchObject({ kind: ArchiveProblemKind.HashMismatch, line: 5 });
    expect(own.problem?.message).toMatch(/line 5: event 25 .*row_hash does not match its columns \(edited\)/);
    const m = parseManifest(readFileSync(file, 'utf8'));
    expect(execFileSync('sha256sum', [rowsFile], { encoding: 'utf8' }).split(' ')[0]).not.toBe(m?.sha256);

    const r = await verifyAuditChain(db.pool, {
      anchors: anchors(),
      archives: { directory: archiveDir, publicKey: keys.publicKey },
    });
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.ArchiveInvalid });
    expect(r.problems[0]?.message).toContain(name);
    // Without --archives the database side still verifies: the archive is what was changed.
    expect((await verifyAuditChain(db.pool, { anchors: anchors() })).ok).toBe(true);

    // A manifest edited to match: its signature no longer verifies (openssl agrees).
    writeFileSync(file, readFileSync(file, 'utf8').replace(/^rows 20$/m, 'rows 21'));
    expect((await verifyArchive(file, keys.publicKey)).problem?.kind).toBe(ArchiveProblemKind.SignatureInvalid);
    const ossl = spawnSync(
      'openssl',
      ['pkeyutl', '-verify', '-pubin', '-inkey', publicKeyFile, '-rawin', '-in', file, '-sigfile', `${file}.sig`],
      { encoding: 'utf8' },
    );
    expect(ossl.status).not.toBe(0);
  });

  it('catches a segment dropped outside the retention path by a superuser', async () => {
    await fill();
    await retention({ maxSegments: 2 });
    // The superuser deletes the next segment, (40, 60], with the triggers off.
    await asSuperuser(async (c) => {
      await c.query('DELETE FROM audit_events WHERE id > 40 AND id <= 60');
    });
    const r = await verifyAuditChain(db.pool);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.LinkBroken, eventId: 61 });
    expect(r.problems[0]?.message).toMatch(/events after the archived segment were deleted or inserted/);
    // The anchor after 60 events names its head as missing.
    const a = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(a.problems[0]).toMatchObject({ kind: ChainProblemKind.AnchoredRowMissing });
    expect(a.problems[0]?.message).toMatch(/event 60( \(lane \d+\))? is missing: anchor .*anchor-/);
    // Retention refuses to go on from a broken trail.
    await expect(retention()).rejects.toThrow(/does not link to the last checkpoint, nothing dropped/);
  });

  it('catches the oldest events deleted by a superuser when retention never ran', async () => {
    await seed(30);
    await asSuperuser(async (c) => {
      await c.query('DELETE FROM audit_events WHERE id <= 20');
    });
    const r = await verifyAuditChain(db.pool);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.LinkBroken, eventId: 21 });
    expect(r.problems[0]?.message).toContain('no retention checkpoint covers it');
  });

  // Lanes need concurrent transactions: the embedded database runs one at a time (one lane).
  (backendName() === 'postgresql' ? it : it.skip)(
    'a lane emptied by retention goes on from its base hash, and anchors count its dropped events',
    async () => {
      const a = await db.pool.connect();
      const ev = { kind: AuditEventKind.AuditQuery, actor: 'x', detail: {} };
      try {
        // A holds its lane (open transaction) while B appends, so B appends to another lane.
        await a.query('BEGIN');
        for (let i = 0; i < 5; i++) await recordAudit(a, ev);
        const b = await db.pool.connect();
        try {
          for (let i = 0; i < 30; i++) await recordAudit(b, ev);
        } finally {
          b.release();
        }
        await a.query('COMMIT');
        const lanes = await db.pool.query<{ chain_lane: number; n: string }>(
          'SELECT chain_lane, count(*) AS n FROM audit_events GROUP BY chain_lane ORDER BY min(id)',
        );
        expect(lanes.rows.map((r) => Number(r.n))).toEqual([5, 30]);
        const emptied = lanes.rows[0]?.chain_lane as number;
        await anchorer().anchorNow();
        await retention();
        expect(await count(`chain_lane = ${emptied}`)).toBe(0);
        // A's backend starts at its own lane again: the emptied one, now linked to its base hash.
        const next = await recordAudit(a, ev);
        const row = await db.pool.query('SELECT chain_lane, prev_hash FROM audit_events WHERE id = $1', [next.id]);
        expect(row.rows[0].chain_lane).toBe(emptied);
        expect(row.rows[0].prev_hash).not.toBe('0'.repeat(64));
        await anchorer().anchorNow();
        const last = anchors()
          .at(-1)
          ?.anchor.lanes.find((l) => l.lane === emptied);
        expect(last).toMatchObject({ lastId: next.id, count: 6 });
        const r = await verifyAuditChain(db.pool, {
          anchors: anchors(),
          archives: { directory: archiveDir, publicKey: keys.publicKey },
        });
        expect(r.problems).toEqual([]);
        expect(r.archivesChecked).toBe(1);
      } finally {
        a.release();
      }
    },
  );

  it('the gateway sweeper drops old segments on its interval', async () => {
    await seed(45);
    const sweeper = new AuditRetentionSweeper({
      pool: db.pool,
      periodDays: 1,
      archiveDirectory: archiveDir,
      segmentRows: SEGMENT,
      privateKey: keys.privateKey,
      intervalMs: 50,
      now: () => Date.now() + 10 * DAY_MS,
    });
    sweeper.start();
    try {
      await waitFor('two segments dropped', async () => (sweeper.droppedSegments >= 2 ? true : undefined), 30_000);
    } finally {
      await sweeper.stop();
    }
    expect(await count('id <= 40')).toBe(0);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  it('the gateway service starts only with a period, and refuses an unreadable key', async () => {
    const database = new Resource<Database>('database', async () => ({ pool: db.pool }) as unknown as Database);
    await database.start();
    const keyFile = path.join(dir, 'anchor.key');
    writeFileSync(keyFile, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const config = (privateKeyFile: string) =>
      loadConfig({
        env: {},
        overrides: {
          audit: { anchor: { privateKeyFile }, retention: { periodDays: 30, archiveDirectory: archiveDir } },
        },
      });
    expect(auditRetentionService(loadConfig({ env: {} }), database, 'radscribe')).toBeUndefined();
    const service = auditRetentionService(config(keyFile), database, 'radscribe');
    expect(service?.name).toBe('audit-retention');
    await service?.start();
    expect(service?.value.droppedSegments).toBe(0);
    await service?.close();
    const missing = auditRetentionService(config(path.join(dir, 'nope.key')), database, 'radscribe');
    await expect(missing?.start()).rejects.toThrow(`audit anchor private key ${path.join(dir, 'nope.key')}`);
    await missing?.close();
  });
});
