import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { uidOfLength } from '../../bench/support/stow-load.js';
import { readSr } from '../../src/dicom/sr/reader.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { dciodvfy, hasTool, MR_TEMPLATE_UIDS, mrInstance } from '../support/sr-validation.js';

/**
 * [REQ-VER-01] (issue 11) Instances arriving after a study's draft went out start a new version of
 * the result (migration 0019), by STOW-RS and by DIMSE C-STORE alike: the stability window restarts,
 * the study is described again, and the new draft SR has its own SOP Instance UID, the same study,
 * and a Predecessor Documents Sequence (0040,A360) naming the previous draft (PS3.3 C.17.2.1). A
 * resend of an instance already held (same SOP Instance UID and bytes) starts nothing, and neither
 * does our own draft coming back (it is stored, not taken for input). The model is
 * the tiny random-weight test fixture (its SR says "TEST FIXTURE – OUTPUT IS MEANINGLESS").
 */
const run = promisify(execFile);
const TEMPLATE = readFileSync(path.join(__dirname, '../fixtures/dicom/MR_small.dcm'));
const COMPREHENSIVE_SR = '1.2.840.10008.5.1.4.1.1.88.33';
const HAVE_DCIODVFY = hasTool('dciodvfy');
const HAVE_STORESCU = hasTool('storescu');
if (!HAVE_DCIODVFY) console.warn('study-versions: dciodvfy (dicom3tools) not on PATH: skipping IOD validation');

interface JobRow {
  id: number;
  result: { location: string; srSopInstanceUid: string; studyVersion: number; predecessorSopInstanceUid?: string };
}

describe.each(backends())('versions of a study result on %s', (backend) => {
  let t: TestGateway;
  let dir: string;
  let port: number;
  const study = uidOfLength(MR_TEMPLATE_UIDS.study.length);
  const seriesA = uidOfLength(MR_TEMPLATE_UIDS.series.length);
  const seriesB = uidOfLength(MR_TEMPLATE_UIDS.series.length);
  const sop = () => uidOfLength(MR_TEMPLATE_UIDS.sop.length);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-versions-'));
    t = await startTestGateway(backend, {
      ingest: { stabilityWindowMs: 300 },
      dimse: {
        listeners: [{ aeTitle: 'RADSCRIBE', port: 0, host: '127.0.0.1', allowedCallingAeTitles: ['MODALITY1'] }],
      },
    });
    port = t.gw.dimseListeners[0]?.port ?? 0;
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const stow = (files: Buffer[]) =>
    new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      auth: { type: 'bearer', token: t.tokens.ingest },
    }).storeInstances(undefined, files);

  async function jobAfter(afterId: number): Promise<JobRow> {
    return waitFor(
      'describe-study job',
      async () => {
        const r = await t.gw.db.pool.query<{ id: string; state: string; result: JobRow['result'] | null }>(
          'SELECT id, state, result FROM jobs WHERE study_instance_uid = $1 AND id > $2 ORDER BY id DESC LIMIT 1',
          [study, afterId],
        );
        const j = r.rows[0];
        if (j?.state === 'failed') throw new Error('describe job failed');
        // The study row is 'exported' in the transaction that completes the job.
        return j?.state === 'succeeded' && j.result ? { id: Number(j.id), result: j.result } : undefined;
      },
      120_000,
    );
  }

  async function studyRow() {
    const r = await t.gw.db.pool.query<{ state: string; version: number; instance_count: number }>(
      'SELECT state, version, instance_count FROM studies WHERE study_instance_uid = $1',
      [study],
    );
    return r.rows[0];
  }

  async function jobCount(): Promise<number> {
    const r = await t.gw.db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM jobs WHERE study_instance_uid = $1',
      [study],
    );
    return r.rows[0]?.n ?? -1;
  }

  it('a later series (STOW-RS) and a later instance of a known series (C-STORE) each make a new version; a resend makes none', async () => {
    const a1 = { study, series: seriesA, sop: sop() };
    const first = mrInstance(TEMPLATE, a1);
    expect((await stow([first])).httpStatus).toBe(200);
    const j1 = await jobAfter(0);
    expect(j1.result.studyVersion).toBe(1);
    expect(await studyRow()).toEqual({ state: 'exported', version: 1, instance_count: 1 });
    const sr1 = readSr(readFileSync(j1.result.location));
    expect(sr1.predecessorDocuments).toEqual([]);
    expect(sr1.instanceNumber).toBe(1);

    // The identical instance again: a duplicate, no new version, no job, no SR (several windows later).
    const again = await stow([first]);
    expect(again.httpStatus).toBe(200);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await studyRow()).toEqual({ state: 'exported', version: 1, instance_count: 1 });
    expect(await jobCount()).toBe(1);

    // Our own draft coming back (a PACS routing it to us): stored, but no new input, so no new version.
    const back = await stow([readFileSync(j1.result.location)]);
    expect(back.httpStatus).toBe(200);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await studyRow()).toEqual({ state: 'exported', version: 1, instance_count: 2 });
    expect(await jobCount()).toBe(1);

    // A second series of the study: version 2, described again, predecessor = the version-1 draft.
    const b1 = { study, series: seriesB, sop: sop() };
    expect((await stow([mrInstance(TEMPLATE, b1)])).httpStatus).toBe(200);
    const j2 = await jobAfter(j1.id);
    expect(j2.result.studyVersion).toBe(2);
    expect(j2.result.predecessorSopInstanceUid).toBe(sr1.sopInstanceUid);
    expect(await studyRow()).toEqual({ state: 'exported', version: 2, instance_count: 3 });
    const sr2 = readSr(readFileSync(j2.result.location));
    expect(sr2.sopInstanceUid).not.toBe(sr1.sopInstanceUid);
    expect(sr2.studyInstanceUid).toBe(study);
    expect(sr2.seriesInstanceUid).toBe(sr1.seriesInstanceUid);
    expect(sr2.instanceNumber).toBe(2);
    expect(sr2.predecessorDocuments).toEqual([
      {
        studyInstanceUid: study,
        seriesInstanceUid: sr1.seriesInstanceUid,
        sopClassUid: COMPREHENSIVE_SR,
        sopInstanceUid: sr1.sopInstanceUid,
      },
    ]);
    expect(sr2.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid).sort()).toEqual([a1.sop, b1.sop].sort());
    if (HAVE_DCIODVFY) {
      const v = dciodvfy(j2.result.location);
      expect(v.iod).toBe('ComprehensiveSR');
      expect(v.errors).toEqual([]);
      expect(v.otherWarnings).toEqual([]);
    }

    // Every ingest path: a further instance of the known series A by DIMSE C-STORE: version 3.
    if (!HAVE_STORESCU) return;
    const a2 = { study, series: seriesA, sop: sop() };
    const file = path.join(dir, 'a2.dcm');
    writeFileSync(file, mrInstance(TEMPLATE, a2));
    await run('storescu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '127.0.0.1', String(port), file], {
      timeout: 60_000,
    });
    const j3 = await jobAfter(j2.id);
    expect(j3.result.studyVersion).toBe(3);
    const sr3 = readSr(readFileSync(j3.result.location));
    expect(sr3.predecessorDocuments.map((p) => p.sopInstanceUid)).toEqual([sr2.sopInstanceUid]);
    expect(new Set([sr1.sopInstanceUid, sr2.sopInstanceUid, sr3.sopInstanceUid]).size).toBe(3);
    expect(await studyRow()).toEqual({ state: 'exported', version: 3, instance_count: 4 });
    // The same C-STORE again: a duplicate (0000 or 0111 per the SCP), no new version.
    await run('storescu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '127.0.0.1', String(port), file], {
      timeout: 60_000,
    }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await studyRow()).toEqual({ state: 'exported', version: 3, instance_count: 4 });
    expect(await jobCount()).toBe(3);
    const exported = await t.gw.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sr_exports WHERE study_instance_uid = $1 AND object_kind = 'sr' AND state = 'sent'`,
      [study],
    );
    expect(exported.rows[0]?.n).toBe(3);
  });
});
