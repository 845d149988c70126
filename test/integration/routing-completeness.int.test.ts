import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { JobQueue } from '../../src/jobs/job-queue.js';
import { promoteStableStudies } from '../../src/jobs/study-stability.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { rewritten } from '../unit/pipeline/ct-series.js';

/**
 * Issue 11 "Completeness and routing" on a real gateway (express on port 0, the tiny model, PGlite
 * and PostgreSQL):
 * - a CT study of two series sent by STOW-RS is complete as soon as the expected-series rule
 *   ("two CT series") is met — long before the 10-minute window — and the rule on Series Description
 *   /lung/ plus Image Type AXIAL sends the draft to destinations b AND c with its frame policy
 *   (3 slices per series: 1 + 3 frames described, where the global policy would describe 1 + 1);
 * - an MR study sent to /dicomweb/aets/CT_AI completes after that source's 400 ms window, and the
 *   ignore rule on MR means it is not described at all; a CT study of one series sent to
 *   /dicomweb/studies (no source window, expectation not met) is still receiving meanwhile;
 * - the rule tester answers for the stored study and for a DICOM file, by API (operator, admin;
 *   auditor and ingest refused) and by CLI (`radscribe rules test`).
 */

const CT = path.join(FIXTURES_DIR, 'dicom', 'CT_small.dcm');
const MR = path.join(FIXTURES_DIR, 'dicom', 'MR_small.dcm');
const BIN = path.join(__dirname, '../../bin/radscribe');
const runAsync = promisify(execFile);

const ROOT = '1.2.826.0.1.3680043.8.498.4711';
const STUDY_A = `${ROOT}.1`;
const STUDY_C = `${ROOT}.3`;

/** A CT_small copy in study/series with a description and Image Type. */
function ctInstance(study: string, series: string, n: number, description: string, imageType: string[]): Buffer {
  return rewritten(CT, {
    '0020000D': { vr: 'UI', Value: [study] },
    '0020000E': { vr: 'UI', Value: [series] },
    '00080018': { vr: 'UI', Value: [`${series}.${n}`] },
    '00200013': { vr: 'IS', Value: [n] },
    '0008103E': { vr: 'LO', Value: [description] },
    '00080008': { vr: 'CS', Value: imageType },
  });
}

interface JobRow {
  state: string;
  result: Record<string, unknown> | null;
}

describe.each(backends())('routing rules and completeness on %s', (backend) => {
  let t: TestGateway;
  let work: string;
  let overrides: Record<string, unknown>;
  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'rs-route-'));
    overrides = {
      // The global window is far beyond the test: only the per-source window and the expected-series
      // rule can complete a study here.
      ingest: { stabilityWindowMs: 600_000 },
      selection: { perSeriesSlices: 1 },
      dimse: { listeners: [{ aeTitle: 'CT_AI', port: 0, host: '127.0.0.1' }] },
      destinations: ['outbox', 'b', 'c'].map((name) => ({ name, type: 'folder', path: path.join(work, name) })),
      defaultDestination: 'outbox',
      routes: [
        { name: 'ignore-mr', match: { modality: ['MR'] }, ignore: true },
        {
          name: 'lung',
          match: { modality: ['CT'], seriesDescription: 'lung', tags: [{ tag: 'ImageType', equals: 'AXIAL' }] },
          destinations: ['b', 'c'],
          selection: { perSeriesSlices: 3 },
        },
        { name: 'from-modality1', match: { callingAeTitle: ['MODALITY1'], modality: ['CT'] }, destinations: ['c'] },
      ],
      completeness: {
        defaultSeriesWindowMs: 300,
        sources: [{ name: 'ct-ai-fast', match: { calledAeTitle: ['CT_AI'] }, studyWindowMs: 400, seriesWindowMs: 200 }],
        expect: [{ name: 'two-ct-series', match: { modality: ['CT'] }, seriesCount: 2 }],
      },
    };
    t = await startTestGateway(backend, overrides);
  });
  afterAll(async () => {
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const stow = (base: string) =>
    new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}${base}`,
      timeoutMs: 30_000,
      auth: { type: 'bearer', token: t.tokens.ingest },
    });
  const finishedJob = (study: string) =>
    waitFor(
      `describe-study job of ${study}`,
      async () => {
        const r = await t.gw.db.pool.query<JobRow>(
          'SELECT state, result FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1',
          [study],
        );
        const j = r.rows[0];
        return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
      },
      120_000,
    );
  const audit = async (kind: string, study: string) =>
    (
      await t.gw.db.pool.query<{ detail: Record<string, unknown>; destination: string | null }>(
        'SELECT detail, destination FROM audit_events WHERE kind = $1 AND study_instance_uid = $2 ORDER BY id',
        [kind, study],
      )
    ).rows;
  /** The folder destination writes <dir>/<Study Instance UID>/<SOP Instance UID>.dcm. */
  const files = (d: string, study = STUDY_A) => {
    try {
      return readdirSync(path.join(work, d, study))
        .filter((f) => f.endsWith('.dcm'))
        .map((f) => path.join(work, d, study, f));
    } catch {
      return [];
    }
  };

  let mrStudy: string;
  it('expected series completes a two-series STOW study before its window; the lung rule picks b and c and its frame policy', async () => {
    const scout = ctInstance(STUDY_A, `${STUDY_A}.1`, 1, 'Topogram', ['ORIGINAL', 'PRIMARY', 'LOCALIZER']);
    const lung = [1, 2, 3].map((n) =>
      ctInstance(STUDY_A, `${STUDY_A}.2`, n, 'Lung 1.0 Axial', ['ORIGINAL', 'PRIMARY', 'AXIAL']),
    );
    const sentAt = Date.now();
    expect((await stow('/dicomweb').storeInstances(undefined, [scout, ...lung])).httpStatus).toBe(200);
    // Study C: one CT series, no source window, expectation (two series) not met.
    const single = ctInstance(STUDY_C, `${STUDY_C}.1`, 1, 'Lung', ['ORIGINAL', 'PRIMARY', 'AXIAL']);
    expect((await stow('/dicomweb').storeInstances(undefined, [single])).httpStatus).toBe(200);

    const job = await finishedJob(STUDY_A);
    expect(Date.now() - sentAt).toBeLessThan(120_000);
    expect(job.state).toBe('succeeded');
    expect(job.result).toMatchObject({
      // 1 scout + 3 lung slices: the rule's perSeriesSlices 3, not the global 1.
      selected: 4,
      destination: 'b',
      route: 'lung',
      routing: {
        route: 'lung',
        destinations: ['b', 'c'],
        ignore: false,
        selection: { perSeriesSlices: 3 },
        why: expect.stringMatching(/"Lung 1.0 Axial" matches \/lung\/i; tag ImageType \(0008,0008\) equals "AXIAL"/),
      },
      destinations: [expect.objectContaining({ destination: 'b' }), expect.objectContaining({ destination: 'c' })],
    });
    expect(files('b')).toHaveLength(1);
    expect(files('c')).toHaveLength(1);
    expect(files('outbox')).toHaveLength(0);
    // Same draft (same profile), same bytes, at both.
    expect(readFileSync(files('b')[0] as string)).toEqual(readFileSync(files('c')[0] as string));
    const queued = await audit('study-queued', STUDY_A);
    expect(queued.map((e) => e.detail)).toEqual([
      expect.objectContaining({ reason: 'expected-series', rule: 'two-ct-series', seriesCount: 2 }),
    ]);
    const exported = await audit('sr-exported', STUDY_A);
    expect(exported.map((e) => [e.destination, e.detail.route])).toEqual([
      ['b', 'lung'],
      ['c', 'lung'],
    ]);
  });

  it('a per-source window completes a study sent to CT_AI; the ignore rule leaves it undescribed; study C still waits', async () => {
    const mr = await stow('/dicomweb/aets/CT_AI').storeInstances(undefined, [MR]);
    expect(mr.httpStatus).toBe(200);
    mrStudy = (
      await t.gw.db.pool.query<{ study_instance_uid: string }>(
        "SELECT study_instance_uid FROM instances WHERE modality = 'MR' LIMIT 1",
      )
    ).rows[0]?.study_instance_uid as string;
    const job = await finishedJob(mrStudy);
    expect(job).toMatchObject({
      state: 'succeeded',
      result: { ignored: true, routing: { route: 'ignore-mr', ignore: true, destinations: [] } },
    });
    const queued = await audit('study-queued', mrStudy);
    expect(queued.map((e) => e.detail)).toEqual([
      expect.objectContaining({ reason: 'window-elapsed', sources: ['ct-ai-fast'], studyWindowMs: 400 }),
    ]);
    expect(await audit('sr-exported', mrStudy)).toEqual([]);
    expect(await audit('inference-run', mrStudy)).toEqual([]);
    // Study C arrived before the MR study and has been quiet longer than 400 ms: no source window applies to it.
    const c = await t.gw.db.pool.query<{ state: string; idle: number }>(
      `SELECT state, extract(epoch FROM now() - last_received_at) * 1000 AS idle FROM studies WHERE study_instance_uid = $1`,
      [STUDY_C],
    );
    expect(c.rows[0]?.state).toBe('receiving');
    expect(Number(c.rows[0]?.idle)).toBeGreaterThan(400);
    expect((await t.gw.db.pool.query('SELECT 1 FROM jobs WHERE study_instance_uid = $1', [STUDY_C])).rowCount).toBe(0);
  });

  it('a C-STORE by DCMTK storescu: the calling AE routes it, the source window of the called AE completes it', async () => {
    const port = t.gw.dimseListeners.find((l) => l.aeTitle === 'CT_AI')?.port as number;
    // Asynchronously: the SCP answering it runs in this process's event loop.
    await runAsync('storescu', ['-aet', 'MODALITY1', '-aec', 'CT_AI', '127.0.0.1', String(port), CT], {
      timeout: 60_000,
    });
    const ctStudy = parsePart10(readFileSync(CT), { untilPixelData: true }).dataset.StudyInstanceUID as string;
    const job = await finishedJob(ctStudy);
    expect(job).toMatchObject({
      state: 'succeeded',
      result: {
        route: 'from-modality1',
        destination: 'c',
        routing: { why: expect.stringMatching(/^rule "from-modality1": series .*modality has CT/) },
      },
    });
    expect(files('c', ctStudy)).toHaveLength(1);
    expect((await audit('study-queued', ctStudy)).map((e) => e.detail)).toEqual([
      expect.objectContaining({ reason: 'window-elapsed', sources: ['ct-ai-fast'] }),
    ]);
  });

  it('several sweeps at once agree: the study is queued once, with one audit event', async () => {
    // Four concurrent sweeps (as four gateway processes would run them) under a policy by which study C
    // is complete: each judges it only under its row lock (FOR UPDATE SKIP LOCKED).
    const policy = {
      stabilityWindowMs: 600_000,
      completeness: {
        defaultSeriesWindowMs: 0,
        sources: [{ name: 'plain-stow', match: { via: ['stow-rs' as const] }, studyWindowMs: 100, seriesWindowMs: 0 }],
        expect: [],
      },
    };
    const sweeps = await Promise.all(
      [1, 2, 3, 4].map(() => promoteStableStudies(t.gw.db.pool, policy, new JobQueue(t.gw.db.pool))),
    );
    expect(sweeps.flat().filter((u) => u === STUDY_C)).toEqual([STUDY_C]);
    const jobs = await t.gw.db.pool.query('SELECT id FROM jobs WHERE study_instance_uid = $1', [STUDY_C]);
    expect(jobs.rowCount).toBe(1);
    expect((await audit('study-queued', STUDY_C)).map((e) => e.detail)).toEqual([
      expect.objectContaining({ reason: 'window-elapsed', sources: ['plain-stow'], studyWindowMs: 100 }),
    ]);
    await finishedJob(STUDY_C);
  });

  it('POST /api/v1/rules/test: a stored study and a DICOM file, for operator and admin only', async () => {
    const url = `${t.gw.baseUrl}/api/v1/rules/test`;
    const asJson = (role: 'operator' | 'admin' | 'auditor' | 'ingest', body: unknown) =>
      fetch(url, {
        method: 'POST',
        headers: { ...t.auth(role), 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const res = await asJson('operator', { studyInstanceUid: STUDY_A });
    expect(res.status).toBe(200);
    const report = (await res.json()) as {
      source: string;
      decision: { route: string; destinations: string[] };
      rules: { rule: string; matched: boolean; why: string; series: { conditions: { actual: string[] }[] }[] }[];
    };
    expect(report.source).toBe('study');
    expect(report.decision).toMatchObject({ route: 'lung', destinations: ['b', 'c'] });
    expect(report.rules.map((r) => [r.rule, r.matched])).toEqual([
      ['ignore-mr', false],
      ['lung', true],
      ['from-modality1', false],
    ]);
    expect(report.rules[0]?.series.map((s) => s.conditions[0]?.actual)).toEqual([['CT'], ['CT']]);

    const file = await fetch(`${url}?calledAeTitle=CT_AI`, {
      method: 'POST',
      headers: { ...t.auth('admin'), 'content-type': 'application/dicom' },
      body: readFileSync(MR),
    });
    expect(file.status).toBe(200);
    expect(((await file.json()) as { decision: unknown }).decision).toMatchObject({ route: 'ignore-mr', ignore: true });
    // The spooled file is gone after the answer.
    expect(readdirSync(path.join(t.dataDir, 'tmp')).filter((f) => f.startsWith('rules-test'))).toEqual([]);

    expect((await asJson('operator', { studyInstanceUid: '1.2.3.999' })).status).toBe(404);
    expect((await asJson('operator', { study: STUDY_A })).status).toBe(400);
    const garbage = await fetch(url, {
      method: 'POST',
      headers: { ...t.auth('operator'), 'content-type': 'application/dicom' },
      body: Buffer.from('not dicom at all'),
    });
    expect(garbage.status).toBe(400);
    for (const role of ['auditor', 'ingest'] as const) {
      const refused = await asJson(role, { studyInstanceUid: STUDY_A });
      expect(refused.status).toBe(403);
      await refused.arrayBuffer();
    }
    const { rows } = await t.gw.db.pool.query<{ detail: { route: string; role: string } }>(
      "SELECT detail FROM audit_events WHERE kind = 'access-refused' AND detail->>'route' = '/api/v1/rules/test' ORDER BY id",
    );
    expect(rows.map((r) => r.detail.role)).toEqual(['auditor', 'ingest']);
  });

  it('radscribe rules test: on a corpus file and on the stored study', async () => {
    const cfgFile = path.join(work, 'rules.yaml');
    writeFileSync(
      cfgFile,
      JSON.stringify({ ...overrides, dataDir: t.dataDir, database: { url: t.config.database.url } }),
    );
    const { DATABASE_URL: _omit, ...env } = process.env;
    const run = (...a: string[]) => spawnSync(BIN, a, { encoding: 'utf8', env, timeout: 120_000 });

    const onFile = run('rules', 'test', MR, '--config', cfgFile);
    expect(onFile.stderr).not.toMatch(/radscribe: /);
    expect(onFile.status).toBe(0);
    expect(onFile.stdout).toContain('rule 1 "ignore-mr": MATCHES');
    expect(onFile.stdout).toMatch(/rule 2 "lung": does not match/);
    expect(onFile.stdout).toMatch(/\[no \] modality: has MR; wanted any of CT/);
    expect(onFile.stdout).toContain('decision: ignored by rule "ignore-mr"');

    // The embedded database has one owner at a time: the gateway lets go of it first.
    if (backend === 'pglite') await t.gw.stop('test');
    const onStudy = run('rules', 'test', '--study', STUDY_A, '--config', cfgFile, '--json');
    expect(onStudy.stderr).not.toMatch(/radscribe: /);
    expect(onStudy.status).toBe(0);
    const report = JSON.parse(onStudy.stdout) as { decision: { route: string }; facts: { series: unknown[] } };
    expect(report.decision.route).toBe('lung');
    expect(report.facts.series).toHaveLength(2);
    const unknown = run('rules', 'test', '--study', '1.2.3.999', '--config', cfgFile);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('no study 1.2.3.999 is held');
    expect(run('rules', 'test', '--config', cfgFile).status).toBe(2);
  });
});
