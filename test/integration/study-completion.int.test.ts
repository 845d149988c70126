import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { ErrorCode } from '../../src/errors.js';
import { ForceCompleteError, ForceCompleteRefusal, forceStudyComplete } from '../../src/jobs/study-completion.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * [REQ-COMPLETE-01] Issue 11 "Completeness": a study is complete when its inactivity window has
 * passed, or when an operator forces it (CLI and API). The job, the study's move to 'queued' and
 * the 'study-queued' audit event with the operator as actor commit together (issue 12).
 */
const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
const sample = parsePart10(readFileSync(SAMPLE)).dataset;
const STUDY = sample.StudyInstanceUID as string;

describe(`forcing a study complete in SQL (${backendName()})`, () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await testDatabase({ poolSize: 2 });
  });
  afterAll(() => db?.close());

  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (e: unknown) => (e instanceof ForceCompleteError ? [e.refusal, e.code] : e),
    );

  it('queues the job with its audit event once; a second force, an unknown study and a removed one are refused', async () => {
    const uid = `1.2.826.0.1.3680043.10.8.${process.pid}.${Date.now() % 1e6}`;
    await db.pool.query('INSERT INTO studies (study_instance_uid) VALUES ($1)', [uid]);
    const done = await forceStudyComplete(db.pool, uid, { actor: 'cli:alice', source: '10.0.0.5' });
    expect(done.previousState).toBe('receiving');
    const { rows } = await db.pool.query<{ state: string; payload: { trigger: string } }>(
      'SELECT state, payload FROM jobs WHERE id = $1',
      [done.jobId],
    );
    expect(rows[0]).toEqual({ state: 'queued', payload: { trigger: 'manual' } });
    const study = await db.pool.query<{ state: string }>('SELECT state FROM studies WHERE study_instance_uid = $1', [
      uid,
    ]);
    expect(study.rows[0]?.state).toBe('queued');
    const audit = await db.pool.query<{ actor: string; source: string; detail: Record<string, unknown> }>(
      "SELECT actor, source, detail FROM audit_events WHERE kind = 'study-queued' AND study_instance_uid = $1",
      [uid],
    );
    expect(audit.rows).toEqual([
      {
        actor: 'cli:alice',
        source: '10.0.0.5',
        detail: { jobId: done.jobId, trigger: 'manual', previousState: 'receiving' },
      },
    ]);
    // Queued already: refused, and nothing was written (one job, one event).
    expect(await refusal(forceStudyComplete(db.pool, uid, { actor: 'cli:bob' }))).toEqual([
      ForceCompleteRefusal.AlreadyQueued,
      ErrorCode.StateConflict,
    ]);
    const counts = await db.pool.query<{ jobs: string; events: string }>(
      `SELECT (SELECT count(*) FROM jobs WHERE study_instance_uid = $1) AS jobs,
              (SELECT count(*) FROM audit_events WHERE kind = 'study-queued' AND study_instance_uid = $1) AS events`,
      [uid],
    );
    expect(counts.rows[0]).toEqual({ jobs: '1', events: '1' });
    expect(await refusal(forceStudyComplete(db.pool, '1.2.3.999', { actor: 'cli:bob' }))).toEqual([
      ForceCompleteRefusal.UnknownStudy,
      ErrorCode.NotFound,
    ]);
  });
});

describe.each(backends())('POST /api/studies/{study}/complete on %s', (backend) => {
  let t: TestGateway;
  beforeAll(async () => {
    // An hour of inactivity window: without the operator the study would wait.
    t = await startTestGateway(backend, { ingest: { stabilityWindowMs: 3_600_000 } });
  });
  afterAll(() => t?.close());

  it('an operator forces the study complete: 202, the job runs at once, the draft is exported, audited with who', async () => {
    const client = new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      timeoutMs: 30_000,
      auth: { type: 'bearer', token: t.tokens.ingest },
    });
    expect((await client.storeInstances(undefined, [SAMPLE])).httpStatus).toBe(200);
    const post = (role: 'operator' | 'ingest', uid = STUDY) =>
      fetch(`${t.gw.baseUrl}/api/studies/${uid}/complete`, { method: 'POST', headers: t.auth(role) });
    expect((await post('ingest')).status).toBe(403);
    const res = await post('operator');
    expect(res.status).toBe(202);
    const body = (await res.json()) as { jobId: number; previousState: string };
    expect(body.previousState).toBe('receiving');
    const job = await waitFor('the forced job', async () => {
      const r = await t.gw.db.pool.query<{ state: string }>('SELECT state FROM jobs WHERE id = $1', [body.jobId]);
      const s = r.rows[0]?.state;
      return s === 'succeeded' || s === 'failed' ? s : undefined;
    });
    expect(job).toBe('succeeded');
    const { rows } = await t.gw.db.pool.query<{ actor: string; source: string }>(
      "SELECT actor, source FROM audit_events WHERE kind = 'study-queued' AND study_instance_uid = $1",
      [STUDY],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.actor).toMatch(/^api-token:\d+$/);
    expect(rows[0]?.source).toMatch(/127\.0\.0\.1$/);
    // Unknown study: 404 with the reason; a UID that is not one: 400.
    const unknown = await post('operator', '1.2.3.4.5.6.7');
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toContain('no study 1.2.3.4.5.6.7 has been received');
    expect((await post('operator', 'not-a-uid')).status).toBe(400);
  });
});

describe('radscribe studies force-complete', () => {
  it('names the study it cannot find and exits 1; usage errors exit 2', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'rs-force-'));
    try {
      const { DATABASE_URL: _omit, ...rest } = process.env;
      const run = (...a: string[]) =>
        spawnSync(path.join(__dirname, '../../bin/radscribe'), a, {
          encoding: 'utf8',
          env: { ...rest, RADSCRIBE_DATA_DIR: dataDir },
          timeout: 120_000,
        });
      const missing = run('studies', 'force-complete', '1.2.3.77');
      expect(missing.stderr).toContain('no study 1.2.3.77 has been received');
      expect(missing.status).toBe(1);
      expect(run('studies', 'force-complete').status).toBe(2);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
