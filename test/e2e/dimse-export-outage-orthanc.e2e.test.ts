import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { SopClass } from '../../src/dicom/uids.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { type DimseProxy, startDimseProxy } from '../support/dimse-proxy.js';
import { startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { type OrthancHandle, orthancAvailable, orthancRest, startOrthanc } from '../support/orthanc.js';

/**
 * [REQ-DIMSE-EXPORT-OUTAGE] (issue 11) "Orthanc down during export, then up: the SR arrives exactly
 * once", for the DIMSE destination (C-STORE SCU, src/dimse/store-scu.ts; the STOW-RS version is
 * stow-export-orthanc.e2e.test.ts). A real Orthanc receives by C-STORE behind a small TCP proxy
 * (test/support/dimse-proxy.ts):
 * (a) the port is closed (connection refused) when the export runs: the job fails the attempt
 *     (sr-exported audited with outcome 4, pacs-unavailable), the port opens again, the retry resends
 *     the staged objects: Orthanc holds one SR and one PDF, the model ran once;
 * (b) the SCP accepts the association, receives the SR and stores it, and the connection drops
 *     before its C-STORE-RSP reaches us: the retry sends the same SOP Instance UID again, Orthanc
 *     keeps one copy, and the export ledger (sr_exports) says delivered once.
 * Counts are Orthanc's own (REST /studies/{id}/instances and /changes), not ours.
 */
jest.setTimeout(240_000);

const avail = orthancAvailable();
const d = avail.ok ? describe : describe.skip;
if (!avail.ok) console.warn(`dimse-export-outage-orthanc e2e skipped: ${avail.reason}`);

const CALLING = 'RADSCRIBE_GW';
const fixture = (name: string) => path.join(__dirname, '../fixtures/dicom', name);

d('DIMSE export to Orthanc through an outage', () => {
  let orthanc: OrthancHandle;
  beforeAll(async () => {
    orthanc = await startOrthanc({
      overwriteInstances: false,
      extraConfig: { DicomAlwaysAllowStore: false, DicomModalities: { gateway: [CALLING, '127.0.0.1', 11112] } },
    });
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  const overrides = (proxy: DimseProxy, backoffBaseMs = 300) => ({
    destinations: [
      {
        name: 'orthanc-dimse',
        type: 'dimse',
        host: '127.0.0.1',
        port: proxy.port,
        calledAeTitle: orthanc.aet,
        callingAeTitle: CALLING,
        pdfCompanion: true,
        connectTimeoutMs: 2_000,
        associationTimeoutMs: 5_000,
        responseTimeoutMs: 5_000,
      },
    ],
    defaultDestination: 'orthanc-dimse',
    jobs: { pollIntervalMs: 100, backoffBaseMs, backoffMaxMs: Math.max(1_000, backoffBaseMs), maxAttempts: 8 },
  });

  async function pushToGateway(t: TestGateway, file: string): Promise<void> {
    const gw = new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      auth: { type: 'bearer', token: t.tokens.ingest },
    });
    expect((await gw.storeInstances(undefined, [file])).httpStatus).toBe(200);
  }

  async function job(t: TestGateway, study: string, done = false) {
    return waitFor(
      done ? 'describe job finished' : 'describe job',
      async () => {
        const { rows } = await t.gw.db.pool.query<{
          id: string;
          state: string;
          attempts: number;
          result: { srSopInstanceUid?: string; pdfSopInstanceUid?: string } | null;
        }>('SELECT id, state, attempts, result FROM jobs WHERE study_instance_uid = $1 ORDER BY id', [study]);
        const j = rows[0];
        if (!j) return undefined;
        if (done && j.state !== 'succeeded' && j.state !== 'failed') return undefined;
        return { ...j, count: rows.length };
      },
      180_000,
    );
  }

  async function exportEvents(t: TestGateway, study: string) {
    const { rows } = await t.gw.db.pool.query<{
      outcome: number;
      sop_instance_uids: string[] | null;
      detail: { code?: string; delivery?: string; object?: string };
    }>(
      `SELECT outcome, sop_instance_uids, detail FROM audit_events WHERE kind = 'sr-exported' AND study_instance_uid = $1 ORDER BY id`,
      [study],
    );
    return rows;
  }

  const inferenceRuns = async (t: TestGateway, study: string) =>
    (
      await t.gw.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_events WHERE kind = 'inference-run' AND study_instance_uid = $1`,
        [study],
      )
    ).rows[0]?.n;

  /** SOP Class → SOP Instance UIDs of what Orthanc holds of the study (its REST API). */
  async function inOrthanc(study: string): Promise<Map<string, string[]>> {
    const found = await orthancRest(
      orthanc,
      'POST',
      '/tools/find',
      JSON.stringify({ Level: 'Study', Query: { StudyInstanceUID: study } }),
    );
    const ids = found.json as string[];
    const by = new Map<string, string[]>();
    if (ids.length === 0) return by;
    expect(ids).toHaveLength(1);
    const instances = (await orthancRest(orthanc, 'GET', `/studies/${ids[0]}/instances?expand`)).json as Array<{
      ID: string;
      MainDicomTags: { SOPInstanceUID: string };
    }>;
    for (const i of instances) {
      const cls = String(
        ((await orthancRest(orthanc, 'GET', `/instances/${i.ID}/metadata/SopClassUid`)).json as string) ?? '',
      );
      by.set(cls, [...(by.get(cls) ?? []), i.MainDicomTags.SOPInstanceUID]);
    }
    return by;
  }

  /** Orthanc's change log: how many times it took a new instance (a re-send of a held UID is no NewInstance). */
  async function newInstanceChanges(): Promise<number> {
    const r = (await orthancRest(orthanc, 'GET', '/changes?limit=10000')).json as {
      Changes: Array<{ ChangeType: string }>;
    };
    return r.Changes.filter((c) => c.ChangeType === 'NewInstance').length;
  }

  it('(a) port closed when the export runs, then open: the job retries, SR and PDF arrive once, the model ran once', async () => {
    const file = fixture('MR_small.dcm');
    const study = String(parsePart10(readFileSync(file)).dataset.StudyInstanceUID);
    const proxy = await startDimseProxy(orthanc.dicomPort);
    await proxy.down();
    let t: TestGateway | undefined;
    try {
      const changesBefore = await newInstanceChanges();
      t = await startTestGateway('pglite', overrides(proxy));
      const gw = t;
      await pushToGateway(gw, file);
      // The export fails while the port is closed: the attempt is audited as a minor failure (retried).
      const failed = await waitFor('a failed export attempt', async () => {
        const e = await exportEvents(gw, study);
        return e.length > 0 ? e : undefined;
      });
      expect(failed[0]).toMatchObject({ outcome: 4, detail: expect.objectContaining({ code: 'pacs-unavailable' }) });
      expect(proxy.connections).toBe(0);
      expect((await job(gw, study)).state).not.toBe('succeeded');
      await proxy.up();

      const j = await job(gw, study, true);
      expect(j).toMatchObject({ state: 'succeeded', count: 1 });
      expect(j.attempts).toBeGreaterThanOrEqual(2);
      const sr = j.result?.srSopInstanceUid as string;
      const pdf = j.result?.pdfSopInstanceUid as string;
      const held = await inOrthanc(study);
      expect(held.get(SopClass.ComprehensiveSrStorage)).toEqual([sr]);
      expect(held.get(SopClass.EncapsulatedPdfStorage)).toEqual([pdf]);
      expect([...held.values()].flat()).toHaveLength(2);
      expect((await newInstanceChanges()) - changesBefore).toBe(2);
      expect(await inferenceRuns(gw, study)).toBe(1);

      // Audit: failed attempt(s) (outcome 4), then one success per object; the failures name no other UID.
      const events = await exportEvents(gw, study);
      const success = events.filter((e) => e.outcome === 0);
      expect(success.map((e) => e.detail.object).sort()).toEqual(['pdf', 'sr']);
      expect(events.slice(0, events.length - 2).every((e) => e.outcome === 4)).toBe(true);
      const ledger = await gw.gw.db.pool.query<{ sop_instance_uid: string; state: string; delivery: string }>(
        'SELECT sop_instance_uid, state, delivery FROM sr_exports WHERE study_instance_uid = $1 ORDER BY sop_instance_uid',
        [study],
      );
      expect(ledger.rows).toEqual(
        [
          { sop_instance_uid: sr, state: 'sent', delivery: 'stored' },
          { sop_instance_uid: pdf, state: 'sent', delivery: 'stored' },
        ].sort((a, b) => a.sop_instance_uid.localeCompare(b.sop_instance_uid)),
      );
    } finally {
      await t?.close();
      await proxy.close();
    }
  });

  it('(b) the SCP stores the SR and the connection drops before its C-STORE-RSP: the retry leaves one SR, delivered once', async () => {
    const file = fixture('CT_small.dcm');
    const study = String(parsePart10(readFileSync(file)).dataset.StudyInstanceUID);
    const proxy = await startDimseProxy(orthanc.dicomPort);
    const cut = proxy.cutNextStoreResponse();
    let t: TestGateway | undefined;
    try {
      const changesBefore = await newInstanceChanges();
      // The retry waits 3 s, long enough to look at Orthanc between the two associations.
      t = await startTestGateway('pglite', overrides(proxy, 3_000));
      const gw = t;
      await pushToGateway(gw, file);
      await cut;
      // Orthanc stored the SR before its answer was lost; the PDF never left.
      const between = await waitFor('the SR in Orthanc after the cut', async () => {
        const h = await inOrthanc(study);
        return h.get(SopClass.ComprehensiveSrStorage) ? h : undefined;
      });
      expect(between.get(SopClass.EncapsulatedPdfStorage)).toBeUndefined();
      expect(proxy.connections).toBe(1);
      const j = await job(gw, study, true);
      expect(j).toMatchObject({ state: 'succeeded', count: 1 });
      expect(j.attempts).toBe(2);
      // Two associations: the cut one, and the retry's.
      expect(proxy.connections).toBe(2);
      const sr = j.result?.srSopInstanceUid as string;
      const pdf = j.result?.pdfSopInstanceUid as string;
      const held = await inOrthanc(study);
      // Orthanc had the SR from the first association; the second send of the same UID added nothing.
      expect(held.get(SopClass.ComprehensiveSrStorage)).toEqual([sr]);
      expect(held.get(SopClass.EncapsulatedPdfStorage)).toEqual([pdf]);
      expect((await newInstanceChanges()) - changesBefore).toBe(2);
      expect(await inferenceRuns(gw, study)).toBe(1);

      const events = await exportEvents(gw, study);
      const srEvents = events.filter((e) => e.sop_instance_uids?.includes(sr));
      expect(srEvents.map((e) => [e.outcome, e.detail.code ?? e.detail.delivery])).toEqual([
        [4, 'pacs-unavailable'],
        [0, 'stored'],
      ]);
      const ledger = await gw.gw.db.pool.query<{ state: string; delivery: string; n: number }>(
        `SELECT state, delivery, count(*) OVER ()::int AS n FROM sr_exports WHERE sop_instance_uid = $1`,
        [sr],
      );
      expect(ledger.rows).toEqual([{ state: 'sent', delivery: 'stored', n: 1 }]);
    } finally {
      await t?.close();
      await proxy.close();
    }
  });
});
