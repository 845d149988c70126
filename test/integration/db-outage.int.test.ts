import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CommitCutter, startCommitCutter } from '../../bench/support/commit-cutter.js';
import {
  type PrivatePostgres,
  postgresBinDir,
  StopMode,
  startPrivatePostgres,
} from '../../bench/support/private-postgres.js';
import { checkStored, type StowAnswer, storeInstances, uidOfLength, withUids } from '../../bench/support/stow-load.js';
import { errorHandler } from '../../src/app.js';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { migrate } from '../../src/db/migrate.js';
import { type Database, DatabaseUnavailableError, openDatabase, withClient } from '../../src/db/pool.js';
import { ErrorCode, errorCodeOf } from '../../src/errors.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { type InstanceSink, type ReceivedFile, ReceivedVia } from '../../src/ingest/types.js';
import { createStowRouter } from '../../src/pacs/stow-router.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { startTestServer, type TestHttpServer } from '../support/http.js';

/**
 * [REQ-DB-03] (issue 9) Database outage. A private PostgreSQL cluster (initdb into a temporary
 * directory, own port and socket, bench/support/private-postgres.ts) is stopped under STOW-RS
 * traffic and started again. Clients get 503 + Retry-After (or 0xA700 for parts of a request that
 * had begun), nothing is acknowledged that is not committed, and the same gateway process serves
 * again after the restart. The system PostgreSQL server is never touched.
 */

const TEMPLATE = readFileSync(path.join(FIXTURES_DIR, 'dicom', 'MR_small.dcm'));
const T_SOP = '1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457';
const T_STUDY = '1.3.6.1.4.1.5962.1.2.4.20040826185059.5457';

const haveServer = postgresBinDir() !== undefined;
const maybe = haveServer ? describe : describe.skip;

function instance(study: string): { sop: string; bytes: Buffer } {
  const sop = uidOfLength(T_SOP.length);
  return {
    sop,
    bytes: withUids(
      TEMPLATE,
      new Map([
        [T_SOP, sop],
        [T_STUDY, study],
      ]),
    ),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

maybe('[REQ-DB-03] connection lost while checked out', () => {
  let server: PrivatePostgres;
  beforeAll(async () => {
    server = await startPrivatePostgres();
  });
  afterAll(() => server?.destroy());

  it('a held connection terminated by the server is a typed error, not a crashed process', async () => {
    const db = await openDatabase({ url: server.url, dataDir: '/nonexistent-unused', poolSize: 2 });
    try {
      const err = await withClient(db.pool, async (client) => {
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // pg-pool listens for 'error' only on idle clients: this one is checked out when it breaks.
        await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid]).catch(() => undefined);
        await sleep(300);
        return client.query('SELECT 1').then(
          () => undefined,
          (e: unknown) => e,
        );
      });
      expect(err).toBeDefined();
      // The pool gives a working connection again.
      expect((await db.pool.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    } finally {
      await db.close();
    }
  });

  it('with the server stopped, a query is database-unavailable at once, and works after it starts', async () => {
    const db = await openDatabase({ url: server.url, dataDir: '/nonexistent-unused', poolSize: 2 });
    try {
      await server.stop(StopMode.Fast);
      const started = Date.now();
      const err = await db.pool.query('SELECT 1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatabaseUnavailableError);
      expect(errorCodeOf(err)).toBe(ErrorCode.DatabaseUnavailable);
      expect(Date.now() - started).toBeLessThan(5_000);
      await server.start();
      expect((await db.pool.query('SELECT 4 AS four')).rows).toEqual([{ four: 4 }]);
    } finally {
      await db.close();
    }
  });
});

maybe('[REQ-DB-03] COMMIT sent, answer lost', () => {
  let server: PrivatePostgres;
  let cutter: CommitCutter;
  let db: Database;
  let work: string;
  beforeAll(async () => {
    server = await startPrivatePostgres();
    cutter = await startCommitCutter(server.socketPath);
    work = await mkdtemp(path.join(tmpdir(), 'rs-cut-'));
    db = await openDatabase({
      url: `postgresql://postgres@127.0.0.1:${cutter.port}/postgres`,
      dataDir: work,
      poolSize: 2,
    });
    await migrate(db.pool);
  }, 120_000);
  afterAll(async () => {
    await db?.close();
    await cutter?.close();
    await server?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function received(bytes: Buffer, name: string): Promise<ReceivedFile> {
    const p = path.join(work, name);
    await writeFile(p, bytes);
    return { path: p, sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  it('is refused (0xA700, not acknowledged), the file is kept, and the retry is answered from the committed row', async () => {
    const store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
    const ctx = { via: ReceivedVia.StowRs, actor: 'test' };
    const { sop, bytes } = instance(uidOfLength(T_STUDY.length));
    const cut = cutter.armOnce();
    const first = await store.accept(await received(bytes, 'a.dcm'), ctx);
    await cut;
    expect(first).toMatchObject({ status: 'failed', failureReason: 0xa700, code: ErrorCode.DatabaseUnavailable });
    // The server did commit: the row is there, and so is its file (an older build deleted it).
    const { rows } = await db.pool.query<{ file_path: string }>(
      'SELECT file_path FROM instances WHERE sop_instance_uid = $1',
      [sop],
    );
    expect(rows).toHaveLength(1);
    expect(existsSync(rows[0]?.file_path as string)).toBe(true);
    // The client's retry (it was told A700) is an identical duplicate: success, one copy.
    const retry = await store.accept(await received(bytes, 'b.dcm'), ctx);
    expect(retry).toMatchObject({ status: 'duplicate' });
    const check = await checkStored(db.pool, [sop]);
    expect(check).toMatchObject({ missingRows: [], missingFiles: [], missingAudit: [], duplicateAudit: [] });
  });

  it('a resend puts back the file of a committed row whose file is missing', async () => {
    const store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
    const ctx = { via: ReceivedVia.StowRs, actor: 'test' };
    const { sop, bytes } = instance(uidOfLength(T_STUDY.length));
    expect((await store.accept(await received(bytes, 'c.dcm'), ctx)).status).toBe('stored');
    const { rows } = await db.pool.query<{ file_path: string }>(
      'SELECT file_path FROM instances WHERE sop_instance_uid = $1',
      [sop],
    );
    await rm(rows[0]?.file_path as string);
    expect(await store.accept(await received(bytes, 'd.dcm'), ctx)).toMatchObject({ status: 'duplicate' });
    expect(readFileSync(rows[0]?.file_path as string).equals(bytes)).toBe(true);
  });
});

maybe('[REQ-DB-03] STOW-RS answer when the database fails mid-request', () => {
  let server: PrivatePostgres;
  let db: Database;
  let work: string;
  let http: TestHttpServer;
  let offered = 0;
  let stopAfterFirst = false;
  /** UIDs the store read and refused as database-unavailable, over the tests below. */
  const refusedUids: string[] = [];
  beforeAll(async () => {
    server = await startPrivatePostgres();
    work = await mkdtemp(path.join(tmpdir(), 'rs-stow-db-'));
    await mkdir(path.join(work, 'tmp'));
    db = await openDatabase({ url: server.url, dataDir: work, poolSize: 2 });
    await migrate(db.pool);
    const store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
    // The real store; the database is stopped right after the first part of a request was stored.
    const sink: InstanceSink = {
      accept: async (file, ctx) => {
        offered++;
        const outcome = await store.accept(file, ctx);
        if (stopAfterFirst && offered === 1) await server.stop(StopMode.Fast);
        return outcome;
      },
    };
    http = await startTestServer((app) => {
      app.use('/dicomweb', createStowRouter({ sink, tmpDir: path.join(work, 'tmp') }));
      app.use(errorHandler());
    });
  }, 120_000);
  afterAll(async () => {
    await http?.close();
    await db?.close();
    await server?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });
  beforeEach(async () => {
    offered = 0;
    stopAfterFirst = false;
  });

  it('first part stored, then the database stops: 202, the rest 0xA700 without being tried, Retry-After', async () => {
    stopAfterFirst = true;
    const study = uidOfLength(T_STUDY.length);
    const parts = [instance(study), instance(study), instance(study)];
    const a = await storeInstances(
      `${http.url}/dicomweb`,
      parts.map((p) => p.bytes),
    );
    expect(a.status).toBe(202);
    expect(a.retryAfter).toBe('5');
    expect(a.referenced).toEqual([parts[0]?.sop]);
    expect([...a.failed]).toEqual([
      [parts[1]?.sop, 0xa700],
      // The third part was not offered to the store: no SOP Instance UID was read from it.
    ]);
    expect(offered).toBe(2);
    refusedUids.push(parts[1]?.sop as string);
    await server.start();
    expect(await checkStored(db.pool, a.referenced)).toMatchObject({
      missingRows: [],
      missingFiles: [],
      missingAudit: [],
    });
  });

  it('database down from the start: 503 with Retry-After, nothing stored, one part tried', async () => {
    await server.stop(StopMode.Fast);
    try {
      const study = uidOfLength(T_STUDY.length);
      const parts = [instance(study), instance(study)];
      const res = await fetch(`${http.url}/dicomweb/studies`, {
        method: 'POST',
        headers: { 'content-type': 'multipart/related; type="application/dicom"; boundary=xx' },
        body: Buffer.concat([
          ...parts.flatMap((p) => [
            Buffer.from('--xx\r\nContent-Type: application/dicom\r\n\r\n'),
            p.bytes,
            Buffer.from('\r\n'),
          ]),
          Buffer.from('--xx--\r\n'),
        ]),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.json()).toEqual({
        code: 'database-unavailable',
        message: 'the database is unavailable; try again later',
      });
      expect(offered).toBe(1);
      refusedUids.push(parts[0]?.sop as string);
    } finally {
      await server.start();
    }
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM instances');
    expect(rows).toEqual([{ n: 1 }]); // only the first test's stored instance
  });

  it('the refusals the database could not record are audited once it answers (outcome 8)', async () => {
    const a = await storeInstances(`${http.url}/dicomweb`, [instance(uidOfLength(T_STUDY.length)).bytes]);
    expect(a.status).toBe(200);
    const { rows } = await db.pool.query<{ uids: string[]; detail: { refused: number; errorCode: string } }>(
      `SELECT sop_instance_uids AS uids, detail FROM audit_events
       WHERE kind = 'instance-refused' AND outcome = 8 AND detail->>'errorCode' = 'database-unavailable'`,
    );
    expect(rows.flatMap((r) => r.uids).sort()).toEqual([...refusedUids].sort());
    expect(rows.reduce((n, r) => n + r.detail.refused, 0)).toBe(refusedUids.length);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });
});

maybe('[REQ-DB-03] gateway through a PostgreSQL outage under STOW-RS traffic', () => {
  let server: PrivatePostgres;
  let t: TestGateway;
  beforeAll(async () => {
    server = await startPrivatePostgres();
    t = await startTestGateway('pglite', {
      database: { url: server.url, checkoutTimeoutMs: 3_000 },
      ingest: { stabilityWindowMs: 3_600_000 },
    });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await server?.destroy();
  });

  it('503 + Retry-After during the outage, nothing acknowledged uncommitted, serving again after restart', async () => {
    const base = `${t.gw.baseUrl}/dicomweb`;
    const sent = new Map<string, Buffer>();
    const answers: Array<StowAnswer & { at: number; sops: string[] }> = [];
    let running = true;
    const clients = Array.from({ length: 8 }, async () => {
      const study = uidOfLength(T_STUDY.length);
      while (running) {
        const parts = [instance(study), instance(study)];
        for (const p of parts) sent.set(p.sop, p.bytes);
        const at = Date.now();
        const a = await storeInstances(
          base,
          parts.map((p) => p.bytes),
          30_000,
          t.auth('ingest'),
        );
        answers.push({ ...a, at, sops: parts.map((p) => p.sop) });
        if (a.status !== 200) await sleep(50);
      }
    });
    await sleep(1_500);
    await server.stop(StopMode.Fast);
    // The window in which the server is certainly down: after pg_ctl stop returned, before start.
    const down = Date.now();
    await sleep(2_500);
    const starting = Date.now();
    await server.start();
    const up = Date.now();
    // Until the first success that began after the restart (bounded by the test timeout).
    while (!answers.some((a) => a.at >= up && a.status === 200)) await sleep(50);
    const recovered = Math.min(...answers.filter((a) => a.at >= up && a.status === 200).map((a) => a.at + a.ms));
    await sleep(1_000);
    running = false;
    await Promise.all(clients);

    const statuses = new Set(answers.map((a) => a.status));
    // Only these: stored, partly stored, unavailable. Never a 500, never a dropped connection.
    expect([...statuses].filter((s) => ![200, 202, 503].includes(s))).toEqual([]);
    const during = answers.filter((a) => a.at >= down && a.at + a.ms < starting);
    expect(during.length).toBeGreaterThan(0);
    expect(during.every((a) => a.status === 503 && a.retryAfter === '5')).toBe(true);
    // Parts refused in a 202 carry 0xA700 (out of resources, PS3.4 B.2.3).
    for (const a of answers.filter((x) => x.status === 202))
      expect([...a.failed.values()].every((r) => r === 0xa700)).toBe(true);

    const pool = t.gw.db.pool;
    const acked = answers.flatMap((a) => a.referenced);
    const check = await checkStored(pool, acked);
    expect(check).toMatchObject({ missingRows: [], missingFiles: [], missingAudit: [], duplicateAudit: [] });
    expect(check.acknowledged).toBeGreaterThan(0);

    // The client retries what was not acknowledged: each is then stored or found (commit outcome
    // unknown at the outage), and every instance ever sent has its row, file and audit event.
    const unacked = [...sent.keys()].filter((u) => !new Set(acked).has(u));
    for (const uid of unacked) {
      const a = await storeInstances(base, [sent.get(uid) as Buffer], 120_000, t.auth('ingest'));
      expect({ uid, status: a.status, referenced: a.referenced }).toEqual({ uid, status: 200, referenced: [uid] });
    }
    const all = await checkStored(pool, sent.keys());
    expect(all).toMatchObject({
      acknowledged: sent.size,
      rows: sent.size,
      missingRows: [],
      missingFiles: [],
      missingAudit: [],
      duplicateAudit: [],
      rowsWithoutFile: [],
    });
    expect((await verifyAuditChain(pool)).ok).toBe(true);
    // The refusals of the outage were audited once the database answered (outcome 8, serious failure).
    const refusals = await pool.query<{ uids: string[] | null; detail: { refused: number } }>(
      `SELECT sop_instance_uids AS uids, detail FROM audit_events
       WHERE kind = 'instance-refused' AND outcome = 8 AND detail->>'errorCode' = 'database-unavailable'`,
    );
    expect(refusals.rows.reduce((n, r) => n + r.detail.refused, 0)).toBeGreaterThan(0);
    expect(refusals.rows.flatMap((r) => r.uids ?? []).filter((u) => !sent.has(u))).toEqual([]);
    const health = await fetch(`${t.gw.baseUrl}/health`);
    expect(health.status).toBe(200);
    // Recovery is bounded: the first success after the restart comes within the checkout timeout.
    expect(recovered - up).toBeLessThan(10_000);
  }, 180_000);
});
