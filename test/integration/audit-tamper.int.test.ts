import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import {
  type LaneHead,
  type LoadedAnchor,
  readAnchors,
  readVerifiedHead,
  writeVerifiedHead,
} from '../../src/audit/audit-anchor.js';
import { AuditAnchorer } from '../../src/audit/audit-anchorer.js';
import {
  canonicalAuditEvent,
  chainRowOf,
  type RawChainRow,
  SELECT_AUDIT_CHAIN_RAW,
} from '../../src/audit/audit-canonical.js';
import { AuditEventKind } from '../../src/audit/audit-codes.js';
import { recordAudit } from '../../src/audit/audit-log.js';
import { ChainProblemKind, verifyAuditChain } from '../../src/audit/audit-verify.js';
import { formatVerifyReport } from '../../src/cli/audit.js';
import { loadConfig } from '../../src/config.js';
import type { Database } from '../../src/db/pool.js';
import { auditAnchorService } from '../../src/services/audit-anchor-service.js';
import { Resource } from '../../src/services/service.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { waitFor } from '../support/gateway.js';

jest.setTimeout(120_000);

/**
 * [REQ-AUD-02] Tamper evidence against a database superuser (issue 12 "Tamper evidence", issue 15
 * "Audit verification trusts the database it checks"). The test connection is a superuser on both
 * backends (PostgreSQL: the CI role; PGlite: postgres), which is exactly the attacker here.
 */
describe(`audit tamper evidence (${backendName()})`, () => {
  let db: TestDatabase;
  let dir: string;
  let anchorDir: string;
  const keys = generateKeyPairSync('ed25519');

  beforeEach(async () => {
    // Ten connections on the server: the lanes test holds eight transactions open at once.
    db = await testDatabase({ poolSize: backendName() === 'postgresql' ? 10 : 2 });
    dir = mkdtempSync(path.join(tmpdir(), 'radscribe-anchor-'));
    anchorDir = path.join(dir, 'anchors');
  });
  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function seed(n: number, from = 0): Promise<number[]> {
    const ids: number[] = [];
    for (let i = from; i < from + n; i++)
      ids.push(
        (
          await recordAudit(db.pool, {
            kind: AuditEventKind.InstanceReceived,
            actor: 'STORESCU',
            source: '10.0.0.7',
            patientId: `PAT-${i % 3}`,
            studyInstanceUid: '1.2.3',
            sopInstanceUids: [`1.2.3.${i}`],
            detail: { via: 'stow-rs', sizeBytes: 100 + i },
          })
        ).id,
      );
    return ids;
  }

  const anchorer = () =>
    new AuditAnchorer({ pool: db.pool, directory: anchorDir, intervalMs: 3_600_000, privateKey: keys.privateKey });
  const anchors = () => readAnchors(anchorDir, keys.publicKey);

  /** As the superuser: the triggers off for `fn`, then on again. */
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

  /** Recomputes every prev_hash/row_hash in SQL with whatever audit_event_canonical() now is. */
  const REWRITE_CHAIN_IN_SQL = `DO $$
DECLARE r record; prev text;
BEGIN
  FOR r IN SELECT id, chain_lane FROM audit_events ORDER BY id LOOP
    SELECT p.row_hash INTO prev FROM audit_events p WHERE p.chain_lane = r.chain_lane AND p.id < r.id
      ORDER BY p.id DESC LIMIT 1;
    UPDATE audit_events a SET prev_hash = coalesce(prev, repeat('0', 64)) WHERE a.id = r.id;
    UPDATE audit_events a SET row_hash = encode(sha256(convert_to(a.prev_hash || audit_event_canonical(a), 'UTF8')), 'hex')
      WHERE a.id = r.id RETURNING a.row_hash INTO prev;
  END LOOP;
END $$`;

  /** The old verifier's check (the database's own function): true when every row "verifies". */
  async function sqlSideVerifies(): Promise<boolean> {
    const { rows } = await db.pool.query<{ bad: string }>(
      `SELECT count(*) AS bad FROM audit_events a
       WHERE a.row_hash <> encode(sha256(convert_to(a.prev_hash || audit_event_canonical(a), 'UTF8')), 'hex')`,
    );
    return Number(rows[0]?.bad) === 0;
  }

  it('computes the same canonical text as the database for hostile values', async () => {
    const hostile = [
      { kind: AuditEventKind.ConfigChange, detail: { scope: 'network', before: { a: 1, bb: [1.5, -2, 0] } } },
      {
        kind: AuditEventKind.InstanceRefused,
        outcome: 8 as const,
        actor: 'A"E\\T\nI\tT\u0001LE',
        source: '::ffff:127.0.0.1',
        destination: 'é ü 中文 😀',
        patientId: 'PAT "x"',
        studyInstanceUid: '1.2.840.1',
        sopInstanceUids: ['1.2', '1.3'],
        detail: {
          z: 'last',
          a: 'first',
          ab: null,
          big: 12345678901234567000,
          huge: 1e21,
          tiny: 1e-7,
          neg: -0.5,
          t: true,
        },
      },
      {
        kind: AuditEventKind.InferenceRun,
        sopInstanceUids: [],
        detail: { '': 'empty key', ü: 2, nested: { b: {}, a: [] } },
      },
      { kind: AuditEventKind.AuditQuery, actor: 'cli:root', detail: {} },
    ];
    for (const ev of hostile) await recordAudit(db.pool, ev);
    const { rows } = await db.pool.query<RawChainRow & { db_canonical: string }>(
      SELECT_AUDIT_CHAIN_RAW.replace(
        'FROM audit_events a',
        ', audit_event_canonical(a) AS db_canonical FROM audit_events a',
      ),
      [0, 100],
    );
    expect(rows).toHaveLength(hostile.length);
    for (const r of rows) expect(canonicalAuditEvent(chainRowOf(r))).toBe(r.db_canonical);
    expect(await verifyAuditChain(db.pool)).toMatchObject({ ok: true, checked: hostile.length, problems: [] });
  });

  it('grants the application role only INSERT and SELECT on audit_events, the auditor only SELECT', async () => {
    await seed(2);
    const c = await db.pool.connect();
    try {
      await c.query('SET ROLE radscribe_app');
      // The chain trigger runs as the app role: the append works and chains.
      await c.query(
        `INSERT INTO audit_events (kind, event_id, action_code, detail) VALUES ('audit-query', '110101', 'R', '{}')`,
      );
      expect((await c.query('SELECT count(*)::int AS n FROM audit_events')).rows[0].n).toBe(3);
      for (const sql of [
        `UPDATE audit_events SET actor = 'x'`,
        'DELETE FROM audit_events',
        'TRUNCATE audit_events',
        'ALTER TABLE audit_events DISABLE TRIGGER USER',
      ])
        await expect(c.query(sql)).rejects.toThrow(/permission denied|must be owner/);
      await c.query('RESET ROLE');
      await c.query('SET ROLE radscribe_auditor');
      expect((await c.query('SELECT count(*)::int AS n FROM audit_events')).rows[0].n).toBe(3);
      await expect(
        c.query(`INSERT INTO audit_events (kind, event_id, action_code) VALUES ('audit-query', '110101', 'R')`),
      ).rejects.toThrow(/permission denied/);
    } finally {
      await c.query('RESET ROLE');
      c.release();
    }
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  // Lanes need concurrent transactions: the embedded database runs one transaction at a time
  // (pglite-session-gate.ts), so every row it writes is in one lane.
  (backendName() === 'postgresql' ? it : it.skip)(
    'concurrent writers append in parallel lanes; each lane is its own chain, anchored and checked',
    async () => {
      const event = (i: number) => ({
        kind: AuditEventKind.InstanceReceived,
        actor: 'STORESCU',
        source: '10.0.0.7',
        studyInstanceUid: '1.2.3',
        sopInstanceUids: [`1.2.3.${i}`],
        detail: { via: 'dimse', sizeBytes: i },
      });
      // Eight transactions open at once each hold a lane until they commit: eight lanes, no waiting.
      const clients = await Promise.all(Array.from({ length: 8 }, () => db.pool.connect()));
      try {
        for (const c of clients) await c.query('BEGIN');
        for (const [i, c] of clients.entries()) await recordAudit(c, event(i));
        for (const c of [...clients].reverse()) await c.query('COMMIT');
      } finally {
        for (const c of clients) c.release();
      }
      const lanesOf = async () =>
        (
          await db.pool.query<{ chain_lane: number; ids: string[] }>(
            'SELECT chain_lane, array_agg(id::text ORDER BY id) AS ids FROM audit_events GROUP BY chain_lane',
          )
        ).rows;
      expect(await lanesOf()).toHaveLength(8);
      const ok = await verifyAuditChain(db.pool);
      expect(ok).toMatchObject({ ok: true, checked: 8 });
      expect(ok.heads).toHaveLength(8);
      await Promise.all(Array.from({ length: 16 }, (_, i) => recordAudit(db.pool, event(8 + i))));
      await anchorer().anchorNow();
      const all = await verifyAuditChain(db.pool, { anchors: anchors() });
      expect(all).toMatchObject({ ok: true, checked: 24, anchorsChecked: 1 });
      expect(all.heads.reduce((n, h) => n + h.count, 0)).toBe(24);

      // The last row of one lane deleted: the other lanes verify, that lane is shorter than signed.
      const lanes = await lanesOf();
      const victim = lanes.find((l) => l.ids.length >= 2 && l.chain_lane !== 0) ?? (lanes[0] as (typeof lanes)[0]);
      const lastOfLane = Number(victim.ids[victim.ids.length - 1]);
      await asSuperuser(async (c) => {
        await c.query('DELETE FROM audit_events WHERE id = $1', [lastOfLane]);
      });
      expect((await verifyAuditChain(db.pool)).ok).toBe(true); // no anchor: the chain alone cannot tell
      const short = await verifyAuditChain(db.pool, { anchors: anchors() });
      expect(short.ok).toBe(false);
      expect(short.problems[0]?.kind).toBe(ChainProblemKind.ChainShortened);
      const laneNote = victim.chain_lane === 0 ? '' : ` (lane ${victim.chain_lane})`;
      expect(short.problems[0]?.message).toContain(
        `the chain${laneNote} ends at event ${victim.ids[victim.ids.length - 2]}`,
      );

      // A middle row of the lane deleted: the lane's next row no longer links.
      if (victim.ids.length >= 3) {
        await asSuperuser(async (c) => {
          await c.query('DELETE FROM audit_events WHERE id = $1', [Number(victim.ids[0])]);
        });
        const cut = await verifyAuditChain(db.pool);
        expect(cut).toMatchObject({ ok: false, firstBrokenId: Number(victim.ids[1]) });
        expect(cut.problems[0]?.kind).toBe(ChainProblemKind.LinkBroken);
      }
    },
  );

  it('catches a replaced audit_event_canonical() that hides an edit', async () => {
    const ids = await seed(5);
    await asSuperuser(async (c) => {
      // The attacker's canonical form leaves detail out, then rewrites detail and every hash.
      await c.query(`CREATE OR REPLACE FUNCTION audit_event_canonical(e audit_events) RETURNS text
        LANGUAGE sql STABLE AS $$ SELECT e.id::text || e.kind $$`);
      await c.query(`UPDATE audit_events SET detail = '{"via":"c-store"}' WHERE id = $1`, [ids[2]]);
      await c.query(REWRITE_CHAIN_IN_SQL);
    });
    // What the old verifier (database-side canonical form) saw: nothing wrong.
    expect(await sqlSideVerifies()).toBe(true);
    const r = await verifyAuditChain(db.pool);
    expect(r).toMatchObject({ ok: false, firstBrokenId: ids[0], checked: 1 });
    expect(r.problems[0]?.kind).toBe(ChainProblemKind.HashMismatch);
    expect(formatVerifyReport(r)).toMatch(new RegExp(`AUDIT CHAIN BROKEN at event ${ids[0]}.*\\n.*hash-mismatch`));
  });

  it('catches the last rows deleted, and names the anchor that saw them', async () => {
    const ids = await seed(6);
    await anchorer().anchorNow();
    await asSuperuser(async (c) => {
      await c.query('DELETE FROM audit_events WHERE id > $1', [ids[3]]);
    });
    // The remaining chain is internally consistent: only the anchor shows it is short.
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
    const r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r.ok).toBe(false);
    expect(r.firstBrokenId).toBe(ids[4]);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.ChainShortened, eventId: ids[4] });
    expect(r.problems[0]?.message).toContain(`saw 6 events up to event ${ids[5]}`);
    expect(r.problems[0]?.anchorFile).toMatch(/anchor-.*\.json$/);
  });

  it('catches TRUNCATE with the triggers disabled, against an anchor and against the previous run', async () => {
    await seed(4);
    await anchorer().anchorNow();
    const before = await verifyAuditChain(db.pool);
    const state = path.join(dir, 'verified-head.json');
    writeVerifiedHead(state, before.heads);
    await asSuperuser(async (c) => {
      await c.query('TRUNCATE audit_events');
    });
    const r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r).toMatchObject({ ok: false, checked: 0 });
    expect(r.problems[0]?.kind).toBe(ChainProblemKind.ChainShortened);
    expect(formatVerifyReport(r)).toMatch(/ends at event 0 \(0 events\) but anchor .* saw 4 events.*truncated/);
    // No anchors, only the head the previous verification recorded: still refused.
    const p = await verifyAuditChain(db.pool, { anchors: [readVerifiedHead(state) as LoadedAnchor] });
    expect(p).toMatchObject({ ok: false, checked: 0, anchorsChecked: 0, previousRunChecked: true });
    expect(p.problems[0]?.message).toMatch(/but previous verification .*verified-head\.json saw 4 events/);
  });

  it('catches a forged row appended with a made-up hash, and one forged into a rewritten chain', async () => {
    const ids = await seed(4);
    await anchorer().anchorNow();
    const head = (
      await db.pool.query<{ row_hash: string; chain_lane: number }>(
        'SELECT row_hash, chain_lane FROM audit_events ORDER BY id DESC LIMIT 1',
      )
    ).rows[0] as { row_hash: string; chain_lane: number };
    const forgedId = (ids[3] as number) + 1;
    await asSuperuser(async (c) => {
      await c.query(
        `INSERT INTO audit_events (id, occurred_at, kind, event_id, action_code, actor, chain_lane, prev_hash, row_hash)
         VALUES ($1, now(), 'audit-query', '110101', 'R', 'nobody', $2, $3, repeat('a', 64))`,
        [forgedId, head.chain_lane, head.row_hash],
      );
    });
    let r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r).toMatchObject({ ok: false, firstBrokenId: forgedId });
    expect(r.problems[0]?.kind).toBe(ChainProblemKind.HashMismatch);

    // A careful forger: the made-up row removed again, an event in the middle replaced by a
    // forged one, and every hash recomputed with the real canonical form. The chain verifies on its
    // own; the anchor's head no longer matches.
    await asSuperuser(async (c) => {
      await c.query('DELETE FROM audit_events WHERE id = $1', [forgedId]);
      await c.query(
        `UPDATE audit_events SET kind = 'audit-query', event_id = '110101', action_code = 'R', actor = 'nobody',
           patient_id = NULL, sop_instance_uids = NULL, detail = '{}' WHERE id = $1`,
        [ids[1]],
      );
      await c.query(REWRITE_CHAIN_IN_SQL);
    });
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
    r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.AnchorContradicted, eventId: ids[3] });
    expect(formatVerifyReport(r)).toMatch(/the chain was rewritten from the start up to event/);
  });

  it('refuses an anchor not signed with the configured key, and accepts good ones written at start and stop', async () => {
    await seed(2);
    const a = anchorer();
    await a.start();
    await seed(3, 2);
    await a.stop();
    await a.stop();
    const files = readdirSync(anchorDir).filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(2);
    const ok = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(ok).toMatchObject({ ok: true, checked: 5, anchorsChecked: 2 });

    // An attacker edits an anchor to match a shortened chain: the signature no longer verifies.
    const last = path.join(anchorDir, files.sort()[1] as string);
    const forged = JSON.parse(readFileSync(last, 'utf8')) as Record<string, unknown>;
    const lanes = (forged.lanes as LaneHead[]).map((l) => ({ ...l, count: 2 }));
    writeFileSync(last, JSON.stringify({ ...forged, lanes }));
    const r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: ChainProblemKind.AnchorSignatureInvalid, anchorFile: last });
  });

  it('the gateway service anchors at every interval, and refuses to start with an unreadable key', async () => {
    await seed(1);
    const database = new Resource<Database>('database', async () => ({ pool: db.pool }) as unknown as Database);
    await database.start();
    const keyFile = path.join(dir, 'anchor.key');
    writeFileSync(keyFile, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const config = (privateKeyFile: string) =>
      loadConfig({
        env: {},
        overrides: { audit: { anchor: { directory: anchorDir, intervalSeconds: 1, privateKeyFile } } },
      });
    const service = auditAnchorService(config(keyFile), database);
    expect(service).toBeDefined();
    await service?.start();
    try {
      // Start, then at least two intervals, with events in between.
      await waitFor('two interval anchors', async () => {
        await seed(1, 100);
        return readdirSync(anchorDir).filter((f) => f.endsWith('.json')).length >= 3 ? true : undefined;
      });
    } finally {
      await service?.close();
    }
    const r = await verifyAuditChain(db.pool, { anchors: anchors() });
    expect(r.ok).toBe(true);
    expect(r.anchorsChecked).toBeGreaterThanOrEqual(4);

    const missing = auditAnchorService(config(path.join(dir, 'nope.key')), database);
    await expect(missing?.start()).rejects.toThrow(`audit anchor private key ${path.join(dir, 'nope.key')}`);
    await missing?.close();
    expect(auditAnchorService(loadConfig({ env: {} }), database)).toBeUndefined();
  });
});
