import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { getStudyState } from '../../src/ingest/study-lifecycle.js';
import { JobQueue } from '../../src/jobs/job-queue.js';
import { JobKind } from '../../src/jobs/types.js';
import { isDeadLocalWorker, JobWorker } from '../../src/jobs/worker.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

/**
 * [REQ-REL-01] What a gateway killed with kill -9 leaves in the job queue, found by the crash
 * trials (issue 9): its running job must run again right after a restart, not after the rest of a
 * 10-minute lease; and a study whose upload the crash cut off must not be described from the part
 * that arrived before it (the quiet period counts only while the gateway listens).
 */
jest.setTimeout(60_000);

let db: TestDatabase;
let seq = 0;
const uid = (): string => `1.2.826.0.1.3680043.10.${process.pid}.${Date.now() % 1e6}.${++seq}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A pid that existed and is gone: a process that has already exited. */
const deadPid = (): number => spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid as number;

beforeAll(async () => {
  db = await testDatabase({ poolSize: 5 });
});
afterAll(async () => {
  await db?.close();
});

async function addStudy(studyUid: string, ageMs: number): Promise<void> {
  await db.pool.query(
    `INSERT INTO studies (study_instance_uid, instance_count, last_received_at)
     VALUES ($1, 1, now() - $2::double precision * interval '1 millisecond')`,
    [studyUid, ageMs],
  );
}

describe(`crash recovery of the job queue (${backendName()})`, () => {
  it('isDeadLocalWorker: only a worker id of this host whose pid is gone is dead', () => {
    const host = hostname();
    expect(isDeadLocalWorker(`${host}:${deadPid()}:0a1b2c3d`)).toBe(true);
    expect(isDeadLocalWorker(`${host}:${process.pid}:0a1b2c3d`)).toBe(false);
    expect(isDeadLocalWorker(`${host}:${process.ppid}:0a1b2c3d`)).toBe(false);
    expect(isDeadLocalWorker(`other-host-${host}:${deadPid()}:0a1b2c3d`)).toBe(false);
    expect(isDeadLocalWorker('test-worker')).toBe(false);
  });

  it('a restarted worker runs the job a killed worker left running at once, as a new attempt', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s, 0);
    const job = await q.enqueue(db.pool, {
      kind: JobKind.DescribeStudy,
      studyInstanceUid: s,
      payload: { trigger: 'manual' },
    });
    // The killed gateway: claimed with the shipped 10-minute lease, then gone without a trace.
    const killed = await q.claimNext(`${hostname()}:${deadPid()}:deadbeef`, 600_000);
    expect(killed?.id).toBe(job?.id);
    // A live holder on this host keeps its lease (another gateway process, or a reused pid).
    const s2 = uid();
    await addStudy(s2, 0);
    const other = await q.enqueue(db.pool, {
      kind: JobKind.DescribeStudy,
      studyInstanceUid: s2,
      payload: { trigger: 'manual' },
    });
    expect((await q.claimNext(`${hostname()}:${process.ppid}:cafebabe`, 600_000))?.id).toBe(other?.id);

    const ran: number[] = [];
    const worker = new JobWorker({
      pool: db.pool,
      queue: q,
      pollIntervalMs: 50,
      stabilityWindowMs: 60_000,
      handler: async (j) => {
        ran.push(j.id);
        return { ok: true };
      },
    });
    const started = Date.now();
    worker.start();
    try {
      while (!ran.includes(job?.id as number) && Date.now() - started < 10_000) await sleep(50);
    } finally {
      await worker.stop();
    }
    expect(ran).toEqual([job?.id]);
    const after = await q.get(job?.id as number);
    expect(after?.state).toBe('succeeded');
    expect(after?.attempts).toBe(2);
    expect(await getStudyState(db.pool, s)).toBe('exported');
    // The live holder's job was not touched.
    expect((await q.get(other?.id as number))?.state).toBe('running');
    await q.fail(other?.id as number, 'internal', 'test cleanup');
  });

  it('a study quiet since before the start is promoted one stability window after the start, not at once', async () => {
    const s = uid();
    // Quiet for 10 s (the gateway was down): older than the window, but its sender had no chance.
    await addStudy(s, 10_000);
    const worker = new JobWorker({
      pool: db.pool,
      pollIntervalMs: 50,
      stabilityWindowMs: 1500,
      handler: async () => ({ ok: true }),
    });
    worker.start();
    try {
      await sleep(700);
      expect(await getStudyState(db.pool, s)).toBe('receiving');
      const deadline = Date.now() + 10_000;
      let state = await getStudyState(db.pool, s);
      while (state === 'receiving' && Date.now() < deadline) {
        await sleep(50);
        state = await getStudyState(db.pool, s);
      }
      expect(state).not.toBe('receiving');
    } finally {
      await worker.stop();
    }
  });
});
