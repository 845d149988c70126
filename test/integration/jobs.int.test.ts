import { ErrorCode, ModelError } from '../../src/errors.js';
import { getStudy, getStudyState, recordReceipt } from '../../src/ingest/study-lifecycle.js';
import { JobQueue } from '../../src/jobs/job-queue.js';
import { promoteStableStudies } from '../../src/jobs/study-stability.js';
import { JobKind } from '../../src/jobs/types.js';
import { JobWorker } from '../../src/jobs/worker.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(60_000);

let db: TestDatabase;
let seq = 0;
/** A fresh, valid Study Instance UID per call so tests sharing the database never collide. */
const uid = (): string => `1.2.826.0.1.3680043.10.${process.pid}.${Date.now() % 1e6}.${++seq}`;

async function addStudy(studyUid: string, ageMs = 0): Promise<void> {
  await db.pool.query(
    `INSERT INTO studies (study_instance_uid, instance_count, last_received_at)
     VALUES ($1, 1, now() - $2::double precision * interval '1 millisecond')`,
    [studyUid, ageMs],
  );
}
const describeReq = (studyInstanceUid: string, maxAttempts?: number) => ({
  kind: JobKind.DescribeStudy,
  studyInstanceUid,
  payload: { trigger: 'manual' as const },
  ...(maxAttempts ? { maxAttempts } : {}),
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await testDatabase({ poolSize: 5 });
});
afterAll(async () => {
  await db?.close();
});
beforeEach(async () => {
  // Each test sees only its own jobs: finish anything a previous test left claimable.
  // Along legal job transitions only (migration 0015): running → failed, queued → cancelled.
  await db.pool.query(
    `UPDATE jobs SET state = 'failed', locked_by = NULL, locked_until = NULL WHERE state = 'running'`,
  );
  await db.pool.query(`UPDATE jobs SET state = 'cancelled' WHERE state = 'queued'`);
  // …and settle every study a previous test left open, along legal transitions only (the trigger
  // refuses anything else): any → receiving → queued → failed.
  // (A study a job had claimed opens its next version on the way back to receiving: migration 0019.)
  await db.pool.query(
    `UPDATE studies SET state = 'receiving',
       version = version + CASE WHEN state IN ('processing', 'described', 'expunged') THEN 1 ELSE 0 END
     WHERE state NOT IN ('receiving', 'exported', 'failed')`,
  );
  await db.pool.query(`UPDATE studies SET state = 'queued' WHERE state = 'receiving'`);
  await db.pool.query(`UPDATE studies SET state = 'failed' WHERE state = 'queued'`);
});

// [REQ-JOB-01] PostgreSQL job queue: claim, lease, retry, study lifecycle.
describe(`JobQueue (${backendName()})`, () => {
  it('allows one live job per (kind, study) and moves the study to queued', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    const first = await q.enqueue(db.pool, describeReq(s));
    expect(first?.state).toBe('queued');
    expect(first?.payload).toEqual({ trigger: 'manual' });
    expect(await q.enqueue(db.pool, describeReq(s))).toBeNull();
    expect(await getStudyState(db.pool, s)).toBe('queued');
    expect((await q.list({ studyInstanceUid: s })).map((j) => j.id)).toEqual([first?.id]);
  });

  it('three concurrent claimers never claim the same job (30 jobs, SKIP LOCKED)', async () => {
    const q = new JobQueue(db.pool);
    const ids = new Set<number>();
    for (let i = 0; i < 30; i++) {
      const s = uid();
      await addStudy(s);
      const job = await q.enqueue(db.pool, describeReq(s));
      if (job) ids.add(job.id);
    }
    expect(ids.size).toBe(30);
    const claimer = async (w: string): Promise<number[]> => {
      const got: number[] = [];
      for (;;) {
        const job = await q.claimNext(w, 60_000);
        if (!job) return got;
        expect(job.lockedBy).toBe(w);
        got.push(job.id);
      }
    };
    const results = await Promise.all([claimer('w1'), claimer('w2'), claimer('w3')]);
    const all = results.flat();
    expect(all.length).toBe(30);
    expect(new Set(all)).toEqual(ids);
    const running = await q.list({ state: 'running', limit: 100 });
    expect(running.filter((j) => ids.has(j.id)).every((j) => j.attempts === 1)).toBe(true);
  });

  it('a retryable failure re-queues with exponential backoff computed in SQL', async () => {
    const q = new JobQueue(db.pool, { backoffBaseMs: 2_000 });
    const s = uid();
    await addStudy(s);
    const job = await q.enqueue(db.pool, describeReq(s, 3));
    expect(job).not.toBeNull();
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 2; attempt++) {
      await db.pool.query('UPDATE jobs SET run_at = now() WHERE id = $1', [job?.id]);
      const claimed = await q.claimNext('w', 60_000);
      expect(claimed?.id).toBe(job?.id);
      expect(await getStudyState(db.pool, s)).toBe('processing');
      const failed = await q.fail(claimed!.id, ErrorCode.PacsUnavailable, 'PACS returned 503');
      expect(failed?.state).toBe('queued');
      expect(failed?.errorCode).toBe('pacs-unavailable');
      expect(failed?.lastError).toBe('PACS returned 503');
      const { rows } = await db.pool.query<{ ms: number }>(
        'SELECT extract(epoch FROM run_at - now()) * 1000 AS ms FROM jobs WHERE id = $1',
        [job?.id],
      );
      delays.push(Number(rows[0]?.ms));
      expect(await getStudyState(db.pool, s)).toBe('queued');
      // Not due yet: nothing to claim.
      expect(await q.claimNext('w', 60_000)).toBeNull();
    }
    // base · 2^(attempt-1): ≈2 s then ≈4 s (minus the few ms the test itself took).
    expect(delays[0]).toBeGreaterThan(1_500);
    expect(delays[0]).toBeLessThanOrEqual(2_000);
    expect(delays[1]).toBeGreaterThan(3_500);
    expect(delays[1]).toBeLessThanOrEqual(4_000);
    // Third attempt is the last: even a retryable error now fails the job and the study.
    await db.pool.query('UPDATE jobs SET run_at = now() WHERE id = $1', [job?.id]);
    const last = await q.claimNext('w', 60_000);
    expect(last?.attempts).toBe(3);
    const final = await q.fail(last!.id, ErrorCode.Timeout, 'took too long');
    expect(final?.state).toBe('failed');
    expect(await getStudyState(db.pool, s)).toBe('failed');
  });

  it('a permanent failure fails the job at once', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    await q.enqueue(db.pool, describeReq(s, 5));
    const job = await q.claimNext('w', 60_000);
    const failed = await q.fail(job!.id, ErrorCode.DicomInvalid, 'bad dataset');
    expect(failed?.state).toBe('failed');
    expect(failed?.attempts).toBe(1);
    expect(failed?.errorCode).toBe('dicom-invalid');
    // A second outcome for the same attempt is refused.
    expect(await q.complete(job!.id, { ok: true })).toBeNull();
  });

  it('reclaims a job whose lease expired; the old holder can no longer complete it', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    await q.enqueue(db.pool, describeReq(s, 2));
    const first = await q.claimNext('dead-worker', 50);
    expect(first?.attempts).toBe(1);
    expect(await q.claimNext('other', 60_000)).toBeNull();
    await sleep(150);
    const second = await q.claimNext('other', 60_000);
    expect(second?.id).toBe(first?.id);
    expect(second?.attempts).toBe(2);
    expect(second?.lockedBy).toBe('other');
    expect(await q.complete(first!.id, { late: true }, 'dead-worker')).toBeNull();
    expect(await q.extendLease(first!.id, 'dead-worker', 60_000)).toBe(false);
    const done = await q.complete(second!.id, { findings: 1 }, 'other');
    expect(done?.state).toBe('succeeded');
    expect(done?.result).toEqual({ findings: 1 });
    expect(await getStudyState(db.pool, s)).toBe('exported');
  });

  it('an expired lease on the last attempt fails the job with timeout', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    const job = await q.enqueue(db.pool, describeReq(s, 1));
    await q.claimNext('dead-worker', 20);
    await sleep(100);
    expect(await q.claimNext('other', 60_000)).toBeNull();
    const after = await q.get(job!.id);
    expect(after?.state).toBe('failed');
    expect(after?.errorCode).toBe('timeout');
    expect(await getStudyState(db.pool, s)).toBe('failed');
  });
});

// [REQ-JOB-04] The study lifecycle follows the job, in the job's transaction (issue 8).
describe(`study lifecycle driven by the job queue (${backendName()})`, () => {
  it('walks receiving → stable → queued → processing → described → exported', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s, 5_000);
    expect(await getStudyState(db.pool, s)).toBe('receiving');
    expect(await promoteStableStudies(db.pool, 1_000, q)).toContain(s);
    expect(await getStudyState(db.pool, s)).toBe('queued');
    const job = await q.claimNext('w', 60_000);
    expect(job?.studyInstanceUid).toBe(s);
    expect(await getStudyState(db.pool, s)).toBe('processing');
    // Only the lease holder may report progress.
    expect(await q.reportDescribed(job!.id, 'someone-else')).toBe(false);
    expect(await getStudyState(db.pool, s)).toBe('processing');
    expect(await q.reportDescribed(job!.id, 'w')).toBe(true);
    expect(await getStudyState(db.pool, s)).toBe('described');
    expect((await q.complete(job!.id, {}, 'w'))?.state).toBe('succeeded');
    expect(await getStudyState(db.pool, s)).toBe('exported');
  });

  it('a retryable failure after inference sends the study back to queued; cancelling fails it', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    const job = await q.enqueue(db.pool, describeReq(s, 3));
    await q.claimNext('w', 60_000);
    await q.reportDescribed(job!.id, 'w');
    expect((await q.fail(job!.id, ErrorCode.PacsUnavailable, 'STOW-RS 503', 'w'))?.state).toBe('queued');
    expect(await getStudyState(db.pool, s)).toBe('queued');
    expect((await q.cancel(job!.id))?.state).toBe('cancelled');
    expect(await getStudyState(db.pool, s)).toBe('failed');
  });

  it('an operator re-run of an exported study queues it again', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    await q.enqueue(db.pool, describeReq(s));
    const job = await q.claimNext('w', 60_000);
    await q.complete(job!.id, {});
    expect(await getStudyState(db.pool, s)).toBe('exported');
    expect(await q.enqueue(db.pool, describeReq(s))).not.toBeNull();
    expect(await getStudyState(db.pool, s)).toBe('queued');
  });

  it('an instance during a running job: the study waits as stable until that job ends, then is queued again', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s, 5_000);
    expect(await promoteStableStudies(db.pool, 1_000, q)).toContain(s);
    const first = await q.claimNext('w', 60_000);
    expect(first?.studyInstanceUid).toBe(s);
    await recordReceipt(db.pool, s, `${s}.late`);
    expect(await getStudyState(db.pool, s)).toBe('receiving');
    await db.pool.query(
      `UPDATE studies SET last_received_at = now() - interval '1 minute' WHERE study_instance_uid = $1`,
      [s],
    );
    // Complete, but the running job saw an incomplete study: no second job yet.
    expect(await promoteStableStudies(db.pool, 1_000, q)).not.toContain(s);
    expect(await getStudyState(db.pool, s)).toBe('stable');
    expect(await q.list({ studyInstanceUid: s })).toHaveLength(1);
    // The old job's outcome leaves the stable study alone (it is not the study's state any more).
    await q.reportDescribed(first!.id, 'w');
    expect((await q.complete(first!.id, {}, 'w'))?.state).toBe('succeeded');
    expect(await getStudyState(db.pool, s)).toBe('stable');
    expect(await promoteStableStudies(db.pool, 1_000, q)).toContain(s);
    expect(await getStudyState(db.pool, s)).toBe('queued');
    const jobs = await q.list({ studyInstanceUid: s });
    expect(jobs.map((j) => j.state)).toEqual(['queued', 'succeeded']);
    expect(jobs[0]?.payload).toEqual({ trigger: 'stable', instanceCount: 2 });
  });

  it('an expired lease sends a described study back to queued', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s);
    const job = await q.enqueue(db.pool, describeReq(s, 2));
    await q.claimNext('dead-worker', 50);
    await q.reportDescribed(job!.id, 'dead-worker');
    expect(await getStudyState(db.pool, s)).toBe('described');
    await sleep(150);
    const again = await q.claimNext('other', 60_000);
    expect(again?.id).toBe(job?.id);
    expect(await getStudyState(db.pool, s)).toBe('processing');
  });
});

// [REQ-JOB-02] Study completeness by stability window.
describe(`promoteStableStudies (${backendName()})`, () => {
  it('promotes only studies quiet for the window, once, with a job and an audit row', async () => {
    const stable = uid();
    const fresh = uid();
    await addStudy(stable, 5_000);
    await addStudy(fresh, 0);
    const promoted = await promoteStableStudies(db.pool, 1_000);
    expect(promoted).toContain(stable);
    expect(promoted).not.toContain(fresh);
    expect(await promoteStableStudies(db.pool, 1_000)).not.toContain(stable);
    expect(await getStudyState(db.pool, stable)).toBe('queued');
    expect(await getStudyState(db.pool, fresh)).toBe('receiving');
    const jobs = await new JobQueue(db.pool).list({ studyInstanceUid: stable });
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.payload).toEqual({ trigger: 'stable', instanceCount: 1 });
    const { rows } = await db.pool.query<{ event_id: string; detail: { jobId: number } }>(
      `SELECT event_id, detail FROM audit_events WHERE kind = 'study-queued' AND study_instance_uid = $1`,
      [stable],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.event_id).toBe('110103');
    expect(rows[0]?.detail.jobId).toBe(jobs[0]?.id);
  });

  it('a study that receives an instance after export is described again once stable', async () => {
    const q = new JobQueue(db.pool);
    const s = uid();
    await addStudy(s, 5_000);
    expect(await promoteStableStudies(db.pool, 1_000)).toContain(s);
    const job = await q.claimNext('w', 60_000);
    await q.complete(job!.id, {});
    expect(await getStudyState(db.pool, s)).toBe('exported');
    await recordReceipt(db.pool, s, `${s}.late`);
    expect(await getStudyState(db.pool, s)).toBe('receiving');
    expect(await promoteStableStudies(db.pool, 60_000)).not.toContain(s);
    await db.pool.query(
      `UPDATE studies SET last_received_at = now() - interval '2 minutes' WHERE study_instance_uid = $1`,
      [s],
    );
    expect(await promoteStableStudies(db.pool, 60_000)).toContain(s);
    expect(await q.list({ studyInstanceUid: s })).toHaveLength(2);
    expect((await getStudy(db.pool, s))?.instanceCount).toBe(2);
  });
});

// [REQ-JOB-03] Worker loop.
describe(`JobWorker (${backendName()})`, () => {
  it('runUntilIdle promotes, runs the handler and records results and failures by code', async () => {
    const ok = uid();
    const bad = uid();
    await addStudy(ok, 0);
    await addStudy(bad, 0);
    const seen: string[] = [];
    const statesInHandler: string[] = [];
    const worker = new JobWorker({
      pool: db.pool,
      stabilityWindowMs: 200,
      pollIntervalMs: 50,
      leaseMs: 10_000,
      handler: async (job, _signal, progress) => {
        seen.push(job.studyInstanceUid);
        if (job.studyInstanceUid === bad) throw new ModelError(ErrorCode.ModelInvalid, 'model bundle missing');
        await progress.described();
        statesInHandler.push((await getStudyState(db.pool, job.studyInstanceUid)) ?? 'none');
        return { srSopInstanceUid: '1.2.3' };
      },
    });
    const res = await worker.runUntilIdle({ timeoutMs: 20_000 });
    expect(res.idle).toBe(true);
    expect(res.processed).toBe(2);
    expect(seen.sort()).toEqual([ok, bad].sort());
    expect(statesInHandler).toEqual(['described']);
    const q = new JobQueue(db.pool);
    const [okJob] = await q.list({ studyInstanceUid: ok });
    const [badJob] = await q.list({ studyInstanceUid: bad });
    expect(okJob?.state).toBe('succeeded');
    expect(okJob?.result).toEqual({ srSopInstanceUid: '1.2.3' });
    expect(badJob?.state).toBe('failed');
    expect(badJob?.errorCode).toBe('model-invalid');
    expect(await getStudyState(db.pool, ok)).toBe('exported');
    expect(await getStudyState(db.pool, bad)).toBe('failed');
  });

  it('start() processes work in the background and stop() drains the in-flight job', async () => {
    const s = uid();
    await addStudy(s, 10_000);
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    const worker = new JobWorker({
      pool: db.pool,
      stabilityWindowMs: 100,
      pollIntervalMs: 20,
      handler: async (_job, signal) => {
        started();
        await sleep(300);
        return { aborted: signal.aborted };
      },
    });
    worker.start();
    await running;
    await worker.stop();
    await worker.stop();
    const [job] = await new JobQueue(db.pool).list({ studyInstanceUid: s });
    expect(job?.state).toBe('succeeded');
    expect(job?.result).toEqual({ aborted: false });
  });
});
