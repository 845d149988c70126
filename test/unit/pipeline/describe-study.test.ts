import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditRecorder } from '../../../src/audit/audit-recorder.js';
import { parsePart10 } from '../../../src/dicom/dataset.js';
import { findingTexts, readSr } from '../../../src/dicom/sr/reader.js';
import { DicomwebError, ErrorCode } from '../../../src/errors.js';
import { FolderDestination, type SrDestination } from '../../../src/export/sr-destination.js';
import { SrExportLedger } from '../../../src/export/sr-export-ledger.js';
import { InstanceRepository } from '../../../src/ingest/instance-repository.js';
import { InstanceStore } from '../../../src/ingest/instance-store.js';
import type { DraftModel, ImagePreparer } from '../../../src/pipeline/describe-images.js';
import {
  type DescribeStudyDeps,
  type DescribeStudyResult,
  describeStudy as describeOrIgnore,
  type PipelineRecorder,
} from '../../../src/pipeline/describe-study.js';
import { ImagePrepClient } from '../../../src/pipeline/image-prep-client.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';
import { type TestDatabase, testDatabase } from '../../support/db.js';
import { CT_SMALL, ctSlice, received, rewritten } from './ct-series.js';

/** These studies match no ignore rule (routes: []): every result is a described one. */
const describeStudy = (...a: Parameters<typeof describeOrIgnore>) =>
  describeOrIgnore(...a) as Promise<DescribeStudyResult>;

/**
 * [issue 8] Frame selection reads the rows ingest stored, not the files: a CT series whose instance
 * numbers are only consulted in the database, with no file on disk for the slices not selected.
 * The image-prep worker is the only reader of the selected file and returns its header for the SR.
 */
jest.setTimeout(60_000);

const ct = parsePart10(readFileSync(CT_SMALL), { untilPixelData: true }).dataset;
const STUDY = ct.StudyInstanceUID as string;
const preprocessorConfig = JSON.parse(
  readFileSync(path.join(FIXTURES_DIR, 'models', 'tiny-mllama', 'preprocessor_config.json'), 'utf8'),
) as unknown;

/** A model stand-in through the DraftModel seam (STYLE §2.3: inject the model interface). */
const model: DraftModel = {
  info: {
    name: 'row-test',
    version: '1',
    deviceUid: '2.25.1234',
    fixture: false,
    prompt: 'Describe.',
    provider: 'cpu',
  },
  preprocessorConfig,
  describe: async (input) => ({
    text: `tiles ${input.family}`,
    tokenIds: [1, 2],
    stopReason: 'eos',
    timings: {},
  }),
};

let db: TestDatabase;
let work: string;
let store: InstanceStore;
let prep: ImagePrepClient;

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-rows-'));
  store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
  prep = new ImagePrepClient();
});
afterAll(async () => {
  await prep?.close();
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

/** Store slices 1..count (in a shuffled order), then delete the files of every slice not in `keep`. */
async function storeSeries(root: string, count: number, keep: readonly number[]): Promise<Map<number, string>> {
  const sops = new Map<number, string>();
  const order = Array.from({ length: count }, (_, i) => i + 1).sort((a, b) => ((a * 7) % count) - ((b * 7) % count));
  for (const n of order) {
    const slice = ctSlice(n, root);
    const out = await store.accept(received(work, slice.bytes), { via: 'stow-rs', actor: 'ct-1' });
    if (out.status === 'failed') throw new Error(`store slice ${n}: ${out.message}`);
    sops.set(n, slice.sopInstanceUid);
    if (!keep.includes(n)) rmSync(out.storedPath);
  }
  return sops;
}

/**
 * A jobs row for the run (sr_exports.job_id references it: the draft is staged in the export
 * outbox under its job). Cancelled at once, so the one-live-job-per-study index never trips.
 */
async function newJob(): Promise<number> {
  const { rows } = await db.pool.query<{ id: string }>(
    `INSERT INTO jobs (kind, study_instance_uid) VALUES ('describe-study', $1) RETURNING id`,
    [`2.25.9${Date.now()}${Math.floor(Math.random() * 1e6)}`],
  );
  const id = Number(rows[0]?.id);
  await db.pool.query(`UPDATE jobs SET state = 'cancelled' WHERE id = $1`, [id]);
  return id;
}

function harness(perSeriesSlices: number) {
  const opened: string[] = [];
  const runs: { sopInstanceUid: string; outcome: string }[] = [];
  const details: Record<string, unknown>[] = [];
  const outbox = mkdtempSync(path.join(work, 'outbox-'));
  // Records which files the pipeline asks the image-prep worker to open; the worker does the reading.
  const images: ImagePreparer = {
    prepare: (filePath, frame, cfg) => {
      opened.push(filePath);
      return prep.prepare(filePath, frame, cfg);
    },
  };
  const recorder: PipelineRecorder = {
    inferenceRun: async (ev) => {
      runs.push({ sopInstanceUid: ev.sopInstanceUid, outcome: ev.outcome });
      details.push(ev.detail);
    },
    srExported: async () => undefined,
    srExportFailed: async () => undefined,
  };
  const instances = new InstanceRepository(db.pool);
  const deps: DescribeStudyDeps = {
    listInstances: (uid) => instances.listForStudy(uid),
    model,
    images,
    selection: { eachImage: ['CR'], perSeriesSlices },
    routes: [],
    defaultDestination: 'outbox',
    destinations: new Map([
      ['outbox', { destination: new FolderDestination('outbox', outbox), srProfile: 'report', pdfCompanion: false }],
    ]),
    recorder,
    ledger: new SrExportLedger(db.pool),
  };
  return { deps, opened, runs, details, outbox };
}

describe('describeStudy from stored rows', () => {
  it('picks the middle slice by the rows’ Instance Numbers and opens only that file', async () => {
    const sops = await storeSeries('2.25.81001', 4, [3]);
    const { deps, opened, runs } = harness(1);
    const rows = await deps.listInstances(STUDY);
    const series = rows.filter((r) => [...sops.values()].includes(r.sopInstanceUid));
    expect(series.map((r) => r.instanceNumber).sort()).toEqual([1, 2, 3, 4]);
    // Three of the four stored files are gone: reading any header but slice 3's would fail.
    expect(series.filter((r) => existsSync(r.filePath)).map((r) => r.instanceNumber)).toEqual([3]);

    const result = await describeStudy(deps, { id: await newJob(), studyInstanceUid: STUDY });
    // Four slices, middle by Instance Number = slice 3 (index 2); by SOP Instance UID it would be slice 2.
    expect(result).toMatchObject({ selected: 1, described: 1, skipped: [] });
    const slice3 = rows.find((r) => r.sopInstanceUid === sops.get(3));
    expect(opened).toEqual([slice3?.filePath]);
    expect(runs).toEqual([{ sopInstanceUid: sops.get(3), outcome: 'success' }]);

    // The SR's evidence and patient module come from the header the worker read with the pixels.
    const srBytes = readFileSync(result.location);
    const sr = readSr(srBytes);
    expect(sr.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid)).toEqual([sops.get(3)]);
    expect(sr.completionFlag).toBe('COMPLETE');
    const srDataset = parsePart10(srBytes).dataset;
    expect(srDataset.PatientID).toBe(ct.PatientID);
    expect(JSON.stringify(srDataset.PatientName)).toBe(JSON.stringify(ct.PatientName));
    expect(srDataset.StudyInstanceUID).toBe(STUDY);
  });

  it('a selected slice whose file cannot be read is skipped and the draft is PARTIAL', async () => {
    // Six slices, two per series → indices 1 and 4 of the Instance Number order: slices 2 and 5.
    const sops = await storeSeries('2.25.81002', 6, [2]);
    const { deps, opened, runs, outbox } = harness(2);
    const mine = new Set(sops.values());
    const rows = (await deps.listInstances(STUDY)).filter((r) => mine.has(r.sopInstanceUid));
    const result = await describeStudy(
      { ...deps, listInstances: async () => rows },
      { id: await newJob(), studyInstanceUid: STUDY },
    );
    expect(result.selected).toBe(2);
    expect(result.described).toBe(1);
    expect(result.skipped.map((s) => s.sopInstanceUid)).toEqual([sops.get(5)]);
    expect(opened).toHaveLength(2);
    expect(runs).toEqual([
      { sopInstanceUid: sops.get(2), outcome: 'success' },
      { sopInstanceUid: sops.get(5), outcome: 'failure' },
    ]);
    const sr = readSr(readFileSync(result.location));
    expect(sr.completionFlag).toBe('PARTIAL');
    expect(sr.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid)).toEqual([sops.get(2)]);
    expect(readdirSync(path.join(outbox, STUDY))).toHaveLength(1);
  });

  it('[issue 15] a retry after a failed send resends the staged SR bytes; the model runs once', async () => {
    const sops = await storeSeries('2.25.81004', 1, [1]);
    const { deps, runs, outbox } = harness(1);
    const mine = new Set(sops.values());
    const rows = (await deps.listInstances(STUDY)).filter((r) => mine.has(r.sopInstanceUid));
    // A model whose every run writes other text: a re-run would build other bytes under the same UID.
    let calls = 0;
    const drifting: DraftModel = {
      ...model,
      describe: async (i, o) => ({ ...(await model.describe(i, o)), text: `run ${++calls}` }),
    };
    // The folder destination behind a receiver that answers the first send with a transient failure.
    const folder = new FolderDestination('outbox', outbox);
    let sends = 0;
    const flaky: SrDestination = {
      name: folder.name,
      location: folder.location,
      send: (sr) => folder.send(sr),
      sendAll: async (objs) =>
        ++sends === 1
          ? objs.map((o) => ({
              sopInstanceUid: o.sopInstanceUid,
              ok: false as const,
              error: new DicomwebError(ErrorCode.PacsUnavailable, 'POST', 'http://pacs', undefined, 'timed out'),
            }))
          : folder.sendAll(objs),
    };
    // The gateway's recorder for the export (ledger row + audit event in one transaction).
    const audit = new AuditRecorder(db.pool);
    const d: DescribeStudyDeps = {
      ...deps,
      recorder: {
        inferenceRun: deps.recorder.inferenceRun,
        srExported: (ev) => audit.srExported(ev),
        srExportFailed: (ev) => audit.srExportFailed(ev),
      },
      model: drifting,
      listInstances: async () => rows,
      destinations: new Map([['outbox', { destination: flaky, srProfile: 'report', pdfCompanion: false }]]),
    };
    const job = { id: await newJob(), studyInstanceUid: STUDY };
    const first = await describeStudy(d, job).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((first as { code?: string }).code).toBe(ErrorCode.PacsUnavailable);
    const staged = await deps.ledger.stagedForJob(job.id);
    expect(staged).toHaveLength(1);
    expect(staged[0]?.part10).toBeDefined();
    const stagedSha = staged[0]?.part10Sha256;

    const second = await describeStudy(d, job);
    expect(calls).toBe(1);
    expect(runs.filter((r) => r.outcome === 'success')).toHaveLength(1);
    expect(sends).toBe(2);
    const bytes = readFileSync(second.location);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(stagedSha);
    expect(findingTexts(readSr(bytes)).map((f) => f.text)).toEqual(['run 1']);
    expect(second.described).toBe(1);
    // Delivered: the outbox keeps the row, not the bytes.
    expect((await deps.ledger.stagedForJob(job.id))[0]?.part10).toBeUndefined();
    // The failed attempt is audited as a minor failure (4: retried), the resend as a success.
    const { rows: events } = await db.pool.query<{ outcome: number; detail: { code?: string; delivery?: string } }>(
      `SELECT outcome, detail FROM audit_events WHERE kind = 'sr-exported' AND (detail->>'jobId')::bigint = $1 ORDER BY id`,
      [job.id],
    );
    expect(events.map((e) => [e.outcome, e.detail.code ?? e.detail.delivery])).toEqual([
      [4, 'pacs-unavailable'],
      [0, 'stored'],
    ]);
  });

  it('[issue 11] a rule with two destinations: one failing does not stop the other; the retry sends only to it', async () => {
    const sops = await storeSeries('2.25.81011', 1, [1]);
    const { deps } = harness(1);
    const mine = new Set(sops.values());
    const rows = (await deps.listInstances(STUDY)).filter((r) => mine.has(r.sopInstanceUid));
    const dirA = mkdtempSync(path.join(work, 'a-'));
    const dirB = mkdtempSync(path.join(work, 'b-'));
    const sent = { a: 0, b: 0 };
    const counted = (name: 'a' | 'b', dir: string, failFirst: boolean): SrDestination => {
      const folder = new FolderDestination(name, dir);
      return {
        name,
        location: folder.location,
        send: (sr) => folder.send(sr),
        sendAll: async (objs) =>
          ++sent[name] === 1 && failFirst
            ? objs.map((o) => ({
                sopInstanceUid: o.sopInstanceUid,
                ok: false as const,
                error: new DicomwebError(ErrorCode.PacsUnavailable, 'POST', 'http://b', undefined, 'timed out'),
              }))
            : folder.sendAll(objs),
      };
    };
    const audit = new AuditRecorder(db.pool);
    let calls = 0;
    const d: DescribeStudyDeps = {
      ...deps,
      model: {
        ...model,
        describe: async (i, o) => {
          calls++;
          return model.describe(i, o);
        },
      },
      recorder: {
        inferenceRun: deps.recorder.inferenceRun,
        srExported: (ev) => audit.srExported(ev),
        srExportFailed: (ev) => audit.srExportFailed(ev),
      },
      listInstances: async () => rows,
      routes: [{ name: 'both', match: { modality: ['CT'] }, destination: 'a', destinations: ['a', 'b'] }],
      destinations: new Map([
        ['a', { destination: counted('a', dirA, false), srProfile: 'report', pdfCompanion: false }],
        ['b', { destination: counted('b', dirB, true), srProfile: 'report', pdfCompanion: false }],
      ]),
    };
    const job = { id: await newJob(), studyInstanceUid: STUDY };
    const first = await describeStudy(d, job).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((first as { code?: string }).code).toBe(ErrorCode.PacsUnavailable);
    expect(sent).toEqual({ a: 1, b: 1 });
    const staged = await deps.ledger.stagedForJob(job.id);
    expect(staged.map((s) => [s.record.destination, s.part10 === undefined])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    const second = await describeStudy(d, job);
    expect(calls).toBe(1);
    expect(sent).toEqual({ a: 1, b: 2 });
    expect(second.destinations?.map((x) => x.destination)).toEqual(['a', 'b']);
    expect(second.route).toBe('both');
    const a = readFileSync(second.destinations?.[0]?.location as string);
    const b = readFileSync(second.destinations?.[1]?.location as string);
    expect(a).toEqual(b);
    const { rows: events } = await db.pool.query<{ destination: string; outcome: number; route: string }>(
      `SELECT destination, outcome, detail->>'route' AS route FROM audit_events
        WHERE kind = 'sr-exported' AND detail->>'jobId' = $1 ORDER BY id`,
      [String(job.id)],
    );
    expect(events.map((e) => [e.destination, e.outcome, e.route])).toEqual([
      ['a', 0, 'both'],
      ['b', 4, null],
      ['b', 0, 'both'],
    ]);
  });

  it('no described image fails the job with the first image’s error code', async () => {
    const sops = await storeSeries('2.25.81003', 3, []);
    const { deps } = harness(1);
    const mine = new Set(sops.values());
    const rows = (await deps.listInstances(STUDY)).filter((r) => mine.has(r.sopInstanceUid));
    const err = await describeStudy(
      { ...deps, listInstances: async () => rows },
      { id: await newJob(), studyInstanceUid: STUDY },
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Not "no image selected" (dicom-unsupported): the selected slice's own failure, a missing file.
    expect(err).toBeInstanceOf(Error);
    expect((err as { code?: string }).code).toBe('internal');
    expect((err as Error).message).toMatch(/ENOENT/);
  });
});

describe('transcoding fallback', () => {
  it('takes the pixels from the PACS’s copy and keeps the stored instance’s header as evidence', async () => {
    // The progressive (.55) JPEG file labelled JPEG Spectral Selection, Process 7 & 9
    // (1.2.840.10008.1.2.4.54, retired), which no decoder here accepts, so the worker answers
    // dicom-unsupported. (Since issue 9 .53 and .55 decode; no single-frame sample of an
    // undecodable syntax exists.) Same-length UID, so patching the meta bytes moves nothing.
    const progressive = readFileSync(path.join(FIXTURES_DIR, 'dicom', 'CTImage_jpeg_progressive_55_retired.dcm'));
    const at = progressive.indexOf('1.2.840.10008.1.2.4.55', 0, 'latin1');
    expect(at).toBeGreaterThan(132);
    const originalBytes = Buffer.from(progressive);
    originalBytes.write('1.2.840.10008.1.2.4.54', at, 'latin1');
    const head = parsePart10(originalBytes, { untilPixelData: true }).dataset;
    const out = await store.accept(received(work, originalBytes), { via: 'wado-rs', actor: 'pacs-1' });
    expect(out.status).toBe('stored');
    // Stands in for the PACS's Explicit VR Little Endian copy: same UIDs, other pixels, and a
    // Patient ID the SR must not pick up (its evidence is the instance we stored).
    const copy = path.join(work, 'pacs-copy.dcm');
    writeFileSync(
      copy,
      rewritten(CT_SMALL, {
        '0020000D': { vr: 'UI', Value: [head.StudyInstanceUID] },
        '0020000E': { vr: 'UI', Value: [head.SeriesInstanceUID] },
        '00080018': { vr: 'UI', Value: [head.SOPInstanceUID] },
        '00100020': { vr: 'LO', Value: ['FROM-PACS-COPY'] },
      }),
    );
    const { deps, opened, details } = harness(1);
    const asked: string[] = [];
    const result = await describeStudy(
      {
        ...deps,
        transcode: async (inst, { studyInstanceUid }) => {
          asked.push(`${studyInstanceUid}/${inst.sopInstanceUid}/${inst.receivedVia}`);
          return copy;
        },
      },
      { id: await newJob(), studyInstanceUid: head.StudyInstanceUID as string },
    );
    expect(result).toMatchObject({ selected: 1, described: 1, skipped: [] });
    expect(asked).toEqual([`${head.StudyInstanceUID}/${head.SOPInstanceUID}/wado-rs`]);
    expect(opened).toHaveLength(2);
    expect(opened[1]).toBe(copy);
    expect(details[0]).toMatchObject({ transcodedByPacs: true });
    const sr = parsePart10(readFileSync(result.location)).dataset;
    expect(sr.PatientID).toBe(head.PatientID);
    expect(sr.PatientID).not.toBe('FROM-PACS-COPY');
  });
});

describe('pipeline file access', () => {
  it('only the image-prep worker (and the transcoding cache, which writes copies) touches the file system', () => {
    const dir = path.join(__dirname, '../../../src/pipeline');
    const readers = readdirSync(dir)
      .filter((f) => f.endsWith('.ts'))
      .filter((f) => /from 'node:fs(\/promises)?'/.test(readFileSync(path.join(dir, f), 'utf8')));
    expect(readers.filter((f) => f !== 'transcoding-cache.ts')).toEqual(['image-prep-worker.ts']);
  });
});
