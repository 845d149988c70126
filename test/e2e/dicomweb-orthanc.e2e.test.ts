import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { instanceIdentity, parsePart10 } from '../../src/dicom/dataset.js';
import { ErrorCode } from '../../src/errors.js';
import { getString, Tag } from '../../src/pacs/dicom-json.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { QidoPoller } from '../../src/pacs/qido-poller.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { MemoryStudyTracker } from '../support/memory-tracker.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../support/orthanc.js';
import { RecordingSink } from '../support/recording-sink.js';

const avail = orthancAvailable();
if (!avail.ok) console.warn(`dicomweb-orthanc e2e skipped: ${avail.reason}`);
const d = avail.ok ? describe : describe.skip;

const dcm = (name: string): string => path.join(FIXTURES_DIR, 'dicom', name);
const STUDY_FILES = [dcm('SC_rgb_rle.dcm'), dcm('SC_rgb_small_odd.dcm')];

async function uidsOf(file: string) {
  return instanceIdentity(parsePart10(await readFile(file)));
}

d('DICOMweb client and QIDO poller against a real Orthanc (PS3.18 §10.4–10.6)', () => {
  let orthanc: OrthancHandle;
  let client: DicomwebClient;
  let work: string;

  beforeAll(async () => {
    orthanc = await startOrthanc();
    client = new DicomwebClient({
      baseUrl: orthanc.baseUrl,
      auth: { type: 'basic', ...orthanc.auth },
      timeoutMs: 10_000,
    });
    work = await mkdtemp(path.join(os.tmpdir(), 'dicomweb-e2e-'));
  });
  afterAll(async () => {
    await orthanc?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('[REQ-DW-01] storeInstances of corpus files → 200 with every SOP Instance referenced', async () => {
    const ids = await Promise.all(STUDY_FILES.map(uidsOf));
    const res = await client.storeInstances(undefined, STUDY_FILES);
    expect(res.httpStatus).toBe(200);
    expect(res.failed).toEqual([]);
    expect(res.referenced.map((r) => r.sopInstanceUid).sort()).toEqual(ids.map((i) => i.sopInstanceUid).sort());
  });

  test('[REQ-DW-02] searchForStudies finds the stored study; paging with limit/offset', async () => {
    const study = (await uidsOf(STUDY_FILES[0] as string)).studyInstanceUid;
    const all = await client.searchForStudies({}, { includefield: [Tag.StudyInstanceUID] });
    expect(all.map((s) => getString(s, Tag.StudyInstanceUID))).toContain(study);
    const byUid = await client.searchForStudies({ StudyInstanceUID: study });
    expect(byUid).toHaveLength(1);
    const series = await client.searchForSeries(study);
    expect(series.length).toBeGreaterThanOrEqual(1);
    const instances = await client.searchForInstances(study);
    expect(instances).toHaveLength(2);
    expect(await client.searchForStudies({ StudyInstanceUID: '1.2.3.4.5.6.7.8.9' })).toEqual([]);
  });

  test('[REQ-DW-03] retrieveStudy streams every instance back with the same SOP UIDs; metadata too', async () => {
    const ids = await Promise.all(STUDY_FILES.map(uidsOf));
    const study = (ids[0] as { studyInstanceUid: string }).studyInstanceUid;
    const got: string[] = [];
    const n = await client.retrieveStudy(study, {
      onInstance: async (body) => {
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c as Buffer);
        got.push(instanceIdentity(parsePart10(Buffer.concat(chunks))).sopInstanceUid);
      },
    });
    expect(n).toBe(2);
    expect(got.sort()).toEqual(ids.map((i) => i.sopInstanceUid).sort());
    const meta = await client.retrieveStudyMetadata(study);
    expect(meta.map((m) => getString(m, Tag.SOPInstanceUID)).sort()).toEqual(got);
  });

  test('[REQ-DW-04] errors are typed: wrong password → pacs-rejected 401; closed port → pacs-unavailable; no credentials in messages', async () => {
    const bad = new DicomwebClient({
      baseUrl: orthanc.baseUrl,
      auth: { type: 'basic', username: 'gw', password: 'wrong-secret' },
    });
    await expect(bad.searchForStudies()).rejects.toMatchObject({ code: ErrorCode.PacsRejected, status: 401 });
    await bad.searchForStudies().catch((e: Error) => expect(e.message).not.toContain('wrong-secret'));
    const down = new DicomwebClient({ baseUrl: 'http://127.0.0.1:1/dicom-web', timeoutMs: 2000 });
    await expect(down.searchForStudies({ PatientID: 'SECRET-ID' })).rejects.toMatchObject({
      code: ErrorCode.PacsUnavailable,
    });
    await down
      .searchForStudies({ PatientID: 'SECRET-ID' })
      .catch((e: Error) => expect(e.message).not.toContain('SECRET-ID'));
    await expect(client.retrieveStudy('1.2.3.4.999', { onInstance: async () => undefined })).rejects.toMatchObject({
      code: ErrorCode.PacsRejected,
    });
  });

  test('[REQ-DW-05] QidoPoller.pollOnce retrieves a new study exactly once; the next poll retrieves nothing', async () => {
    const fren = dcm('chrFren.dcm');
    const frenIds = await uidsOf(fren);
    expect((await client.storeInstances(frenIds.studyInstanceUid, [fren])).httpStatus).toBe(200);
    const tmpDir = path.join(work, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const sink = new RecordingSink(path.join(work, 'store'));
    const tracker = new MemoryStudyTracker();
    const queries: number[] = [];
    const retrieves: Array<{ study: string; stored: number }> = [];
    const poller = new QidoPoller({
      // No ModalitiesInStudy here: Orthanc 1.10 applies limit/offset before that filter (see qido-poller.ts).
      node: { name: 'orthanc-test', client },
      sink,
      tracker,
      tmpDir,
      lookbackDays: Number.POSITIVE_INFINITY, // corpus studies are from 2007
      pageSize: 1, // force paging through limit/offset
      onQuery: (_n, _q, count) => {
        queries.push(count);
      },
      onRetrieve: (_n, study, counts) => {
        retrieves.push({ study, stored: counts.stored });
      },
    });
    const first = await poller.pollOnce();
    expect(first.studiesRetrieved).toBeGreaterThanOrEqual(1);
    expect(first.studiesFailed).toBe(0);
    expect(sink.stored.has(frenIds.sopInstanceUid)).toBe(true);
    expect(retrieves.find((r) => r.study === frenIds.studyInstanceUid)?.stored).toBe(1);
    expect(sink.received.every((r) => r.ctx.via === 'wado-rs' && r.ctx.actor === 'orthanc-test')).toBe(true);
    const receivedAfterFirst = sink.received.length;
    const second = await poller.pollOnce();
    expect(second.studiesFound).toBe(first.studiesFound);
    expect(second.studiesRetrieved).toBe(0);
    expect(sink.received.length).toBe(receivedAfterFirst);
    expect(tracker.calls.filter((c) => c === `retrieved ${frenIds.studyInstanceUid}`)).toHaveLength(1);
    expect(queries).toEqual([first.studiesFound, first.studiesFound]);
  });
});
