import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { readSr } from '../../src/dicom/sr/reader.js';
import { JobQueue } from '../../src/jobs/job-queue.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * [REQ-SR-01] Per-destination SR profile and PDF companion, and [REQ-SR-02] a re-run by a new model
 * version references its predecessor (PS3.3 C.17.2.1), through the running gateway.
 */
const FILE = path.join(__dirname, '../fixtures/dicom/CT_small.dcm');
const src = parsePart10(readFileSync(FILE)).dataset;
const COMPREHENSIVE_3D_SR = '1.2.840.10008.5.1.4.1.1.88.34';
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';

/** A copy of the fixture bundle whose manifest says another version: a different model Device UID. */
function bundleWithVersion(version: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-bundle-'));
  cpSync(path.join(__dirname, '../fixtures/models/tiny-mllama'), dir, { recursive: true });
  const mf = path.join(dir, 'manifest.json');
  const m = JSON.parse(readFileSync(mf, 'utf8')) as { version: string };
  m.version = version;
  writeFileSync(mf, JSON.stringify(m, null, 2));
  return dir;
}

async function lastJobResult(t: TestGateway, afterId: number) {
  return waitFor(
    'describe-study job',
    async () => {
      const r = await t.gw.db.pool.query<{
        id: string;
        state: string;
        result: Record<string, string> | null;
        last_error: string | null;
      }>(
        `SELECT id, state, result, last_error FROM jobs WHERE study_instance_uid = $1 AND id > $2 ORDER BY id DESC LIMIT 1`,
        [src.StudyInstanceUID, afterId],
      );
      const j = r.rows[0];
      if (j?.state === 'failed') throw new Error(`job failed: ${j.last_error}`);
      return j?.state === 'succeeded' ? { id: Number(j.id), result: j.result! } : undefined;
    },
    120_000,
  );
}

describe('gateway export profiles', () => {
  let t: TestGateway;
  let outbox: string;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rs-out-'));
    outbox = path.join(dir, 'outbox');
    t = await startTestGateway('pglite', {
      destinations: [{ name: 'air-outbox', type: 'folder', path: outbox, srProfile: 'air', pdfCompanion: true }],
      defaultDestination: 'air-outbox',
    });
  });
  afterAll(() => t?.close());

  it('[REQ-SR-01] writes an AIR (TID 1500) SR and a PDF companion in the same series', async () => {
    const stow = await new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      auth: { type: 'bearer', token: t.tokens.ingest },
    }).storeInstances(undefined, [FILE]);
    expect(stow.httpStatus).toBe(200);
    const { result } = await lastJobResult(t, 0);
    const sr = readSr(readFileSync(result.location as string));
    expect(sr.sopClassUid).toBe(COMPREHENSIVE_3D_SR);
    expect(sr.templateIdentifier).toBe('1500');
    expect(sr.preliminaryFlag).toBe('PRELIMINARY');
    const files = readdirSync(path.join(outbox, src.StudyInstanceUID as string));
    expect(files).toHaveLength(2);
    const pdfFile = files.find((f) => f.startsWith(result.pdfSopInstanceUid as string))!;
    const pdf = parsePart10(readFileSync(path.join(outbox, src.StudyInstanceUID as string, pdfFile))).dataset;
    expect(pdf.SOPClassUID).toBe(ENCAPSULATED_PDF);
    expect(pdf.SeriesInstanceUID).toBe(sr.seriesInstanceUid);
    expect(pdf.StudyInstanceUID).toBe(src.StudyInstanceUID);
    const rows = await t.gw.db.pool.query(
      `SELECT object_kind FROM sr_exports WHERE state = 'sent' ORDER BY object_kind`,
    );
    expect(rows.rows.map((r) => r.object_kind)).toEqual(['pdf', 'sr']);
  });

  it('[REQ-SR-02] a re-run by a new model version references the earlier draft as its predecessor', async () => {
    const first = await lastJobResult(t, 0);
    // Same model again: same SR UID, no predecessor (idempotent re-run).
    await new JobQueue(t.gw.db.pool).enqueue(t.gw.db.pool, {
      kind: 'describe-study',
      studyInstanceUid: src.StudyInstanceUID as string,
      payload: { trigger: 'manual' },
    });
    const again = await lastJobResult(t, first.id);
    expect(again.result.srSopInstanceUid).toBe(first.result.srSopInstanceUid);
    expect(again.result.predecessorSopInstanceUid).toBeUndefined();

    // A new model version: new Device UID, new SR UID, predecessor = the first draft.
    (t.config.model as { bundle: string }).bundle = bundleWithVersion('9.9.9-test');
    await t.restart();
    await new JobQueue(t.gw.db.pool).enqueue(t.gw.db.pool, {
      kind: 'describe-study',
      studyInstanceUid: src.StudyInstanceUID as string,
      payload: { trigger: 'manual' },
    });
    const next = await lastJobResult(t, again.id);
    expect(next.result.srSopInstanceUid).not.toBe(first.result.srSopInstanceUid);
    expect(next.result.predecessorSopInstanceUid).toBe(first.result.srSopInstanceUid);
    const ds = parsePart10(readFileSync(next.result.location as string)).dataset;
    const pred = ds.PredecessorDocumentsSequence as {
      ReferencedSeriesSequence: { ReferencedSOPSequence: { ReferencedSOPInstanceUID: string }[] }[];
    }[];
    expect(pred?.[0]?.ReferencedSeriesSequence?.[0]?.ReferencedSOPSequence?.[0]?.ReferencedSOPInstanceUID).toBe(
      first.result.srSopInstanceUid,
    );
  });
});

describe('gateway with an embedding-merge model bundle', () => {
  it('[REQ-INF-01] describes a study with the LLaVA/Gemma-style fixture and writes the draft SR', async () => {
    const t = await startTestGateway('pglite', {
      model: { bundle: path.join(__dirname, '../fixtures/models/tiny-merge-vlm') },
    });
    try {
      const file = path.join(__dirname, '../fixtures/dicom/MR_small.dcm');
      const mr = parsePart10(readFileSync(file)).dataset;
      expect(
        (
          await new DicomwebClient({
            baseUrl: `${t.gw.baseUrl}/dicomweb`,
            auth: { type: 'bearer', token: t.tokens.ingest },
          }).storeInstances(undefined, [file])
        ).httpStatus,
      ).toBe(200);
      const job = await waitFor(
        'job',
        async () => {
          const r = await t.gw.db.pool.query<{
            state: string;
            result: { location: string } | null;
            last_error: string | null;
          }>(`SELECT state, result, last_error FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1`, [
            mr.StudyInstanceUID,
          ]);
          const j = r.rows[0];
          return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
        },
        120_000,
      );
      expect(job.last_error).toBeNull();
      const sr = readSr(readFileSync(job.result!.location));
      expect(sr.studyInstanceUid).toBe(mr.StudyInstanceUID);
      expect(JSON.stringify(sr.content)).toContain('radscribe-tiny-merge-vlm');
    } finally {
      await t.close();
    }
  });
});

describe('execution provider policy', () => {
  it('[REQ-INF-02] model.strict refuses to start when CUDA is requested but only the CPU provider loads', async () => {
    const err = await startTestGateway('pglite', { model: { executionProviders: ['cuda', 'cpu'], strict: true } }).then(
      async (t) => {
        await t.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect((err as { code?: string })?.code).toBe('config-invalid');
    expect(String((err as Error)?.message)).toMatch(/cuda requested but cpu is in use/);
  });

  it('[REQ-INF-02] without strict it falls back to the CPU and reports the provider actually in use', async () => {
    const t = await startTestGateway('pglite', { model: { executionProviders: ['cuda', 'cpu'], strict: false } });
    try {
      const health = (await (await fetch(`${t.gw.baseUrl}/health`)).json()) as { model: { provider: string } };
      expect(health.model.provider).toBe('cpu');
      expect(await (await fetch(`${t.gw.baseUrl}/metrics`, { headers: t.auth('operator') })).text()).toContain(
        'provider="cpu"',
      );
    } finally {
      await t.close();
    }
  });
});
