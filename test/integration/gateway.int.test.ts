import { readFileSync } from 'node:fs';
import path from 'node:path';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { readSr } from '../../src/dicom/sr/reader.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { FIXTURE_TEXT_PREFIX } from '../../src/pipeline/describe-images.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * [REQ-SKEL-01] Walking skeleton on real parts (issue #2): a study pushed to the gateway's STOW-RS
 * endpoint is stored durably, becomes a job after the stability window, is decoded, tiled and
 * described by the ONNX fixture model, and ends as a draft SR in the outbox; every step is audited.
 * Runs against the embedded PGlite and, when DATABASE_URL is set, against the PostgreSQL server.
 */
const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
const sample = parsePart10(readFileSync(SAMPLE)).dataset;

interface JobRow {
  state: string;
  result: { srSopInstanceUid: string; location: string; described: number } | null;
  error_code: string | null;
}

async function finishedJob(t: TestGateway, study: string): Promise<JobRow> {
  return waitFor(
    'describe-study job',
    async () => {
      const r = await t.gw.db.pool.query<JobRow>(
        `SELECT state, result, error_code FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1`,
        [study],
      );
      const j = r.rows[0];
      return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
    },
    120_000,
  );
}

describe.each(backends())('gateway on %s', (backend) => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway(backend);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('[REQ-SKEL-01] STOW-RS in → described → draft SR in the outbox, audited', async () => {
    const client = new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      timeoutMs: 30_000,
      auth: { type: 'bearer', token: t.tokens.ingest },
    });
    const stow = await client.storeInstances(undefined, [SAMPLE]);
    expect(stow.httpStatus).toBe(200);
    expect(stow.referenced.map((r) => r.sopInstanceUid)).toEqual([sample.SOPInstanceUID]);

    const job = await finishedJob(t, sample.StudyInstanceUID as string);
    expect(job.error_code).toBeNull();
    expect(job.state).toBe('succeeded');
    const result = job.result!;
    expect(result.described).toBe(1);
    expect(result.location.startsWith(path.join(t.dataDir, 'outbox'))).toBe(true);

    const sr = readSr(readFileSync(result.location));
    expect(sr.sopInstanceUid).toBe(result.srSopInstanceUid);
    expect(sr.studyInstanceUid).toBe(sample.StudyInstanceUID);
    expect(sr.seriesInstanceUid).not.toBe(sample.SeriesInstanceUID);
    expect(sr.modality).toBe('SR');
    expect(sr.preliminaryFlag).toBe('PRELIMINARY');
    expect(sr.verificationFlag).toBe('UNVERIFIED');
    expect(sr.verifyingObserverCount).toBe(0);
    expect(sr.completionFlag).toBe('COMPLETE');
    expect(sr.specificCharacterSet).toBe('ISO_IR 192');
    expect(sr.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid)).toEqual([sample.SOPInstanceUID]);
    // The fixture's text is labelled wherever it appears.
    expect(sr.seriesDescription).toMatch(/TEST FIXTURE/);
    const tree = JSON.stringify(sr.content);
    expect(tree).toContain(FIXTURE_TEXT_PREFIX.trim());

    const kinds = (
      await t.gw.db.pool.query<{ kind: string }>(
        `SELECT kind FROM audit_events WHERE study_instance_uid = $1 ORDER BY id`,
        [sample.StudyInstanceUID],
      )
    ).rows.map((r) => r.kind);
    expect(kinds).toEqual(
      expect.arrayContaining(['instance-received', 'study-queued', 'inference-run', 'sr-exported']),
    );
    expect(kinds.indexOf('instance-received')).toBeLessThan(kinds.indexOf('sr-exported'));
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
    // The audit trail holds UIDs, hashes and codes, never PHI or model text.
    const everything = (
      await t.gw.db.pool.query<{ row: string }>(`SELECT row_to_json(a)::text AS row FROM audit_events a`)
    ).rows
      .map((r) => r.row)
      .join('\n');
    expect(everything).toContain(sample.SOPInstanceUID as string);
    for (const phi of [sample.PatientID, 'CompressedSamples', sample.AccessionNumber])
      expect(everything).not.toContain(phi as string);
    expect(everything).not.toContain(FIXTURE_TEXT_PREFIX.trim());

    // Hospital IT monitoring: the provider actually in use and the queue, in Prometheus format.
    const metrics = await (await fetch(`${t.gw.baseUrl}/metrics`, { headers: t.auth('operator') })).text();
    expect(metrics).toMatch(
      /^radscribe_model_info\{name="radscribe-tiny-mllama-fixture",version="[^"]+",provider="cpu",fixture="true"\} 1$/m,
    );
    expect(metrics).toMatch(/^radscribe_jobs\{state="succeeded"\} [1-9]/m);
    expect(metrics).toMatch(/^radscribe_exports\{state="sent",object="sr"\} 1$/m);
    const health = await fetch(`${t.gw.baseUrl}/health`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { model: { fixture: boolean } }).model.fixture).toBe(true);
  });

  it('[REQ-SKEL-02] bad input gets the standard answer and nothing accepted is lost', async () => {
    const url = `${t.gw.baseUrl}/dicomweb/studies`;
    // Wrong Content-Type → 415 (PS3.18 §10.5.1.1).
    const r415 = await fetch(url, {
      method: 'POST',
      headers: { ...t.auth('ingest'), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(r415.status).toBe(415);
    // A non-DICOM part and a truncated instance beside a valid one → 202 with Failed SOP Sequence.
    const good = readFileSync(path.join(__dirname, '../fixtures/dicom/MR_small.dcm'));
    const truncated = good.subarray(0, 300);
    const boundary = 'rs-test-boundary';
    const part = (b: Buffer) =>
      Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), b, Buffer.from('\r\n')]);
    const body = Buffer.concat([
      part(Buffer.from('this is not DICOM')),
      part(good),
      part(truncated),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        ...t.auth('ingest'),
        'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
      },
      body,
    });
    expect(res.status).toBe(202);
    const json = (await res.json()) as Record<string, { Value?: Record<string, { Value?: unknown[] }>[] }>;
    expect(json['00081199']?.Value).toHaveLength(1);
    expect(json['00081198']?.Value).toHaveLength(2);
    for (const f of json['00081198']?.Value ?? []) expect(f['00081197']?.Value?.[0]).toBe(0xc000);
    const mr = parsePart10(good).dataset;
    const row = await t.gw.db.pool.query(`SELECT file_path FROM instances WHERE sop_instance_uid = $1`, [
      mr.SOPInstanceUID,
    ]);
    expect(row.rowCount).toBe(1);
    expect((await fetch(`${t.gw.baseUrl}/health`)).status).toBe(200);
  });

  it('[REQ-SKEL-03] state survives a restart', async () => {
    await t.restart();
    const r = await t.gw.db.pool.query(`SELECT state FROM studies WHERE study_instance_uid = $1`, [
      sample.StudyInstanceUID,
    ]);
    expect(r.rows[0]?.state).toBe('exported');
    const starts = await t.gw.db.pool.query(
      `SELECT count(*)::int AS n FROM audit_events WHERE kind = 'application-start'`,
    );
    expect(starts.rows[0]?.n).toBe(2);
  });
});
