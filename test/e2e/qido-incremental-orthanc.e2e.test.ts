import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { uidOfLength } from '../../bench/support/stow-load.js';
import { readSr } from '../../src/dicom/sr/reader.js';
import { PgRemoteStudyTracker } from '../../src/ingest/remote-study-tracker.js';
import { childLogger } from '../../src/logger.js';
import { getString, Tag } from '../../src/pacs/dicom-json.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { PgQidoPollState } from '../../src/pacs/qido-poll-state.js';
import { QidoPoller, QidoScan } from '../../src/pacs/qido-poller.js';
import { toDA, toTM } from '../../src/pacs/qido-window.js';
import { qidoPollerAuditHooks } from '../../src/services/qido-poller-audit.js';
import { type TestDatabase, testDatabase } from '../support/db.js';
import { startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../support/orthanc.js';
import { RecordingSink } from '../support/recording-sink.js';
import { MR_TEMPLATE_UIDS, mrInstance } from '../support/sr-validation.js';

/**
 * [REQ-QIDO-INC-01..04] (issue 11) The QIDO-RS poller's incremental window against a real PACS
 * (Orthanc 1.10 + orthanc-dicomweb in this test's private network namespace), with the real
 * tracker, high-water mark (PostgreSQL / PGlite, migration 0025) and audit hooks:
 * - 12 studies, page size 5: one full scan pages through all of them (5, 5, 2) and each study is
 *   retrieved once; an Orthanc with LimitFindResults (which paging cannot get past) is searched in
 *   split StudyDate/StudyTime windows once its answers reach the node's maxResults;
 * - a second poll without changes searches only [mark − overlap, now] on StudyDate/StudyTime plus the
 *   watch list by UID, and retrieves nothing;
 * - a study with an old StudyDate stored later is missed by the incremental window and found by the
 *   periodic full re-scan;
 * - modalities [CT, US] sent as ModalitiesInStudy=CT,US or checked on the answer: the 2 CT of 15;
 * - through the whole gateway: a study arriving in two halves (the second after the first poll
 *   retrieved the first, and before the study's inactivity window ends) is described once, complete.
 */
const avail = orthancAvailable();
if (!avail.ok) console.warn(`qido-incremental-orthanc e2e skipped: ${avail.reason}`);
const d = avail.ok ? describe : describe.skip;

const TEMPLATE = readFileSync(path.join(__dirname, '../fixtures/dicom/MR_small.dcm'));
const SR_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.88.33';
const TEMPLATE_DA = '20040826';
const TEMPLATE_TM = '185059';

/**
 * MR_small with new UIDs and its StudyDate/StudyTime (and the other dates and times that hold the
 * same values) set to `at`: same-length ASCII replacements, so no element length changes; the
 * digits that also occur in UIDs stay digits (valid UIDs).
 */
function instanceAt(ids: { study: string; series: string; sop: string }, at: Date | null): Buffer {
  const buf = Buffer.from(mrInstance(TEMPLATE, ids));
  if (!at) return buf;
  const swap = (from: string, to: string) => {
    const f = Buffer.from(from, 'ascii');
    const t = Buffer.from(to, 'ascii');
    for (let i = buf.indexOf(f); i >= 0; i = buf.indexOf(f, i + t.length)) t.copy(buf, i);
  };
  swap(TEMPLATE_DA, toDA(at));
  swap(TEMPLATE_TM, toTM(at));
  return buf;
}

/** The same instance as another modality: the Modality (0008,0060) CS value of the explicit-VR template, same length. */
function asModality(buf: Buffer, modality: 'CT' | 'MR'): Buffer {
  const tag = Buffer.from([0x08, 0x00, 0x60, 0x00, 0x43, 0x53, 0x02, 0x00]);
  const i = buf.indexOf(tag);
  if (i < 0) throw new Error('no Modality element');
  buf.write(modality, i + tag.length, 'ascii');
  return buf;
}

const newIds = () => ({
  study: uidOfLength(MR_TEMPLATE_UIDS.study.length),
  series: uidOfLength(MR_TEMPLATE_UIDS.series.length),
  sop: uidOfLength(MR_TEMPLATE_UIDS.sop.length),
});

interface QueryAudit {
  query: Record<string, string>;
  results: number;
  scan: QidoScan;
  pages: number;
  atMaxResults?: boolean;
  split?: boolean;
}

d('QIDO-RS poller: incremental window, paging, re-scan (direct)', () => {
  let orthanc: OrthancHandle;
  let capped: OrthancHandle;
  let db: TestDatabase;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-qido-inc-'));
    [orthanc, capped, db] = await Promise.all([
      startOrthanc(),
      // Orthanc's own maximum answers per find (Orthanc Book, configuration: LimitFindResults).
      startOrthanc({ extraConfig: { LimitFindResults: 3 } }),
      testDatabase(),
    ]);
  });
  afterAll(async () => {
    await orthanc?.stop();
    await capped?.stop();
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const client = (o: OrthancHandle) =>
    new DicomwebClient({ baseUrl: o.baseUrl, auth: { type: 'basic', ...o.auth }, timeoutMs: 30_000 });

  async function queryAudits(node: string, sinceId: number): Promise<Array<QueryAudit & { id: number }>> {
    const r = await db.pool.query<{ id: string; detail: QueryAudit }>(
      `SELECT id, detail FROM audit_events WHERE kind = 'remote-query' AND destination = $1 AND id > $2 ORDER BY id`,
      [node, sinceId],
    );
    return r.rows.map((x) => ({ id: Number(x.id), ...x.detail }));
  }
  const lastAuditId = async () =>
    Number((await db.pool.query<{ m: string | null }>('SELECT max(id) AS m FROM audit_events')).rows[0]?.m ?? 0);

  function poller(node: string, o: OrthancHandle, sink: RecordingSink, clock: () => Date, maxResults = 0) {
    return new QidoPoller({
      node: { name: node, client: client(o) },
      sink,
      tracker: new PgRemoteStudyTracker(db.pool),
      state: new PgQidoPollState(db.pool),
      tmpDir: dir,
      pageSize: 5,
      maxResults,
      lookbackDays: 36500,
      overlapMs: 5 * 60_000,
      fullScanIntervalMs: 3_600_000,
      ...qidoPollerAuditHooks(db.pool, 'test'),
      logger: childLogger('qido-inc-test', { node }),
      now: clock,
    });
  }

  it('pages through 12 studies once, then searches only the window, and the re-scan finds an old study', async () => {
    const pacs = client(orthanc);
    const start = new Date();
    const studies = Array.from({ length: 12 }, newIds);
    for (const ids of studies)
      expect((await pacs.storeInstances(undefined, [instanceAt(ids, start)])).failed).toEqual([]);
    const sink = new RecordingSink(path.join(dir, 'a'));
    let skewMs = 0;
    const p = poller('orthanc-a', orthanc, sink, () => new Date(Date.now() + skewMs));

    // Poll 1: no mark yet → the whole lookback, paged 5 + 5 + 2 (a short page is the last).
    let since = await lastAuditId();
    const s1 = await p.pollOnce();
    expect(s1).toMatchObject({ scan: QidoScan.Full, queries: 1, studiesFound: 12, studiesRetrieved: 12 });
    expect(sink.received.map((r) => r.outcome.status)).toEqual(Array(12).fill('stored'));
    expect(new Set(sink.stored.keys())).toEqual(new Set(studies.map((s) => s.sop)));
    const q1 = await queryAudits('orthanc-a', since);
    expect(q1).toHaveLength(1);
    expect(q1[0]).toMatchObject({ scan: 'full', results: 12, pages: 3 });
    expect(q1[0]?.atMaxResults).toBeUndefined();
    expect(q1[0]?.query.StudyTime).toBeUndefined();

    // Poll 2, a minute later, nothing changed: only the window from (mark − overlap) and the watch
    // list; nothing retrieved.
    skewMs = 60_000;
    since = await lastAuditId();
    const before2 = new Date(Date.now() + skewMs);
    const s2 = await p.pollOnce();
    expect(s2).toMatchObject({ scan: QidoScan.Incremental, studiesFound: 12, studiesRetrieved: 0, studiesUpdated: 0 });
    expect(sink.received).toHaveLength(12);
    const q2 = await queryAudits('orthanc-a', since);
    expect(q2.some((q) => q.scan === 'full')).toBe(false);
    const windowQueries = q2.filter((q) => q.scan === 'incremental');
    expect(windowQueries.length).toBeGreaterThanOrEqual(1);
    // The window starts 5 min (the overlap) before poll 1's clock, as StudyDate/StudyTime ranges.
    const first = windowQueries[0]?.query as Record<string, string>;
    const from = new Date(start.getTime() - 5 * 60_000);
    expect(first.StudyDate).toBe(toDA(from));
    const [lo] = (first.StudyTime ?? '').split('-');
    expect(Math.abs(Number(lo) - Number(toTM(from)))).toBeLessThanOrEqual(2);
    const last = windowQueries.at(-1)?.query as Record<string, string>;
    expect(last.StudyDate).toBe(toDA(before2));
    expect(windowQueries.reduce((n, q) => n + q.results, 0)).toBe(12);
    // The watch list: the 12 studies first seen in the last watchMs, asked for by UID list.
    const watch = q2.filter((q) => q.scan === 'watch');
    expect(watch.flatMap((q) => q.query.StudyInstanceUID?.split(',') ?? []).sort()).toEqual(
      studies.map((s) => s.study).sort(),
    );
    expect(watch.reduce((n, q) => n + q.results, 0)).toBe(12);

    // A study acquired in 2004 reaches the PACS now: the incremental window (on acquisition time) cannot see it.
    const old = newIds();
    expect((await pacs.storeInstances(undefined, [instanceAt(old, null)])).failed).toEqual([]);
    skewMs = 120_000;
    since = await lastAuditId();
    const s3 = await p.pollOnce();
    expect(s3).toMatchObject({ scan: QidoScan.Incremental, studiesRetrieved: 0 });
    expect(sink.received).toHaveLength(12);
    expect((await queryAudits('orthanc-a', since)).some((q) => q.scan === 'full')).toBe(false);

    // An hour after the first full scan the whole lookback is searched again: the old study is found, alone.
    skewMs = 3_600_000 + 1_000;
    since = await lastAuditId();
    const s4 = await p.pollOnce();
    expect(s4).toMatchObject({ scan: QidoScan.Full, studiesFound: 13, studiesRetrieved: 1 });
    expect(sink.received).toHaveLength(13);
    expect(sink.received.at(-1)?.outcome).toMatchObject({ status: 'stored', identity: { sopInstanceUid: old.sop } });
    expect((await queryAudits('orthanc-a', since)).map((q) => [q.scan, q.results])).toEqual([['full', 13]]);

    // And the one after searches the window again from this poll's clock.
    skewMs = 3_600_000 + 61_000;
    const s5 = await p.pollOnce();
    expect(s5).toMatchObject({ scan: QidoScan.Incremental, studiesRetrieved: 0 });
    expect(sink.received).toHaveLength(13);
  });

  it('a modality filter, sent as ModalitiesInStudy (a value list) or checked on the answer, finds exactly the CT studies among 15', async () => {
    const pacs = client(orthanc);
    const at = new Date();
    const ct = [newIds(), newIds()];
    for (const ids of ct)
      expect((await pacs.storeInstances(undefined, [asModality(instanceAt(ids, at), 'CT')])).failed).toEqual([]);
    const run = async (node: string, modalityFilter: 'server' | 'client') => {
      const sink = new RecordingSink(path.join(dir, node));
      const p = new QidoPoller({
        node: { name: node, client: client(orthanc) },
        sink,
        tracker: new PgRemoteStudyTracker(db.pool),
        state: new PgQidoPollState(db.pool),
        tmpDir: dir,
        pageSize: 5,
        lookbackDays: 36500,
        modalities: ['CT', 'US'],
        modalityFilter,
        ...qidoPollerAuditHooks(db.pool, 'test'),
        logger: childLogger('qido-inc-test', { node }),
      });
      const s = await p.pollOnce();
      return { s, sops: [...sink.stored.keys()].sort() };
    };
    const since = await lastAuditId();
    const server = await run('orthanc-mod-server', 'server');
    const clientSide = await run('orthanc-mod-client', 'client');
    // Orthanc holds 13 MR studies (the first test) and these 2 CT.
    for (const r of [server, clientSide]) {
      expect(r.s).toMatchObject({ studiesFound: 2, studiesRetrieved: 2 });
      expect(r.sops).toEqual(ct.map((x) => x.sop).sort());
    }
    const [qs] = await queryAudits('orthanc-mod-server', since);
    const [qc] = await queryAudits('orthanc-mod-client', since);
    expect(qs?.query.ModalitiesInStudy).toBe('CT,US');
    expect(qc?.query.ModalitiesInStudy).toBeUndefined();
    // Client-side: every study listed, 15 in pages of 5, then a short (empty) page.
    expect(qc?.pages).toBe(4);
  });

  it('splits the window of a search that reaches the PACS maximum (LimitFindResults) and retrieves every study once', async () => {
    const pacs = client(capped);
    // Seven studies acquired a minute apart today (Orthanc answers at most 3 + 1 per search, and
    // offset does not reach past that, so paging alone would see 4).
    const base = new Date();
    base.setHours(Math.min(base.getHours(), 12), 0, 0, 0);
    const studies = Array.from({ length: 7 }, newIds);
    for (const [i, ids] of studies.entries())
      expect(
        (await pacs.storeInstances(undefined, [instanceAt(ids, new Date(base.getTime() + i * 60_000))])).failed,
      ).toEqual([]);
    // Without maxResults the cap is invisible: a short page and then nothing.
    const blind = await poller(
      'orthanc-capped-blind',
      capped,
      new RecordingSink(path.join(dir, 'c')),
      () => new Date(),
    ).pollOnce();
    expect(blind.studiesFound).toBe(4);

    const sink = new RecordingSink(path.join(dir, 'b'));
    const since = await lastAuditId();
    const s = await poller('orthanc-capped', capped, sink, () => new Date(), 3).pollOnce();
    expect(s).toMatchObject({ scan: QidoScan.Full, studiesFound: 7, studiesRetrieved: 7 });
    expect(new Set(sink.stored.keys())).toEqual(new Set(studies.map((x) => x.sop)));
    const q = await queryAudits('orthanc-capped', since);
    // The lookback (one StudyDate range) was at the cap and split, down to windows below it.
    expect(q[0]).toMatchObject({ scan: 'full', atMaxResults: true, split: true });
    expect(q.length).toBeGreaterThan(2);
    const leaves = q.filter((x) => !x.split);
    expect(leaves.every((x) => x.results < 3)).toBe(true);
    expect(leaves.reduce((n, x) => n + x.results, 0)).toBe(7);
  });
});

d('QIDO-RS poller: a study arriving in two halves through QIDO is described once, complete', () => {
  let orthanc: OrthancHandle;
  let pacs: DicomwebClient;
  let t: TestGateway | undefined;
  let dir: string;
  /** The study's inactivity window (ingest.stabilityWindowMs): the second half arrives well inside it. */
  const WINDOW_MS = 10_000;
  const POLL_MS = 500;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-qido-halves-'));
    orthanc = await startOrthanc();
    pacs = new DicomwebClient({
      baseUrl: orthanc.baseUrl,
      auth: { type: 'basic', ...orthanc.auth },
      timeoutMs: 30_000,
    });
    process.env.RADSCRIBE_TEST_ORTHANC_HALVES_PASSWORD = orthanc.auth.password;
  });
  afterAll(async () => {
    await t?.close();
    await orthanc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('retrieves the second half before the inactivity window ends and writes one SR over all instances', async () => {
    const at = new Date();
    const study = uidOfLength(MR_TEMPLATE_UIDS.study.length);
    const halves = [0, 1].map(() => {
      const series = uidOfLength(MR_TEMPLATE_UIDS.series.length);
      return [0, 1].map(() => ({ study, series, sop: uidOfLength(MR_TEMPLATE_UIDS.sop.length) }));
    });
    const [h1, h2] = halves as [(typeof halves)[0], (typeof halves)[0]];
    expect(
      (
        await pacs.storeInstances(
          undefined,
          h1.map((ids) => instanceAt(ids, at)),
        )
      ).failed,
    ).toEqual([]);
    t = await startTestGateway('pglite', {
      ingest: { stabilityWindowMs: WINDOW_MS },
      // Every slice of each series is described, so the evidence names all four instances.
      selection: { perSeriesSlices: 2 },
      remoteNodes: [
        {
          name: 'orthanc',
          baseUrl: orthanc.baseUrl,
          auth: {
            type: 'basic',
            username: orthanc.auth.username,
            passwordEnv: 'RADSCRIBE_TEST_ORTHANC_HALVES_PASSWORD',
          },
          poll: { enabled: true, intervalMs: POLL_MS, lookbackDays: 1, overlapMs: 60_000 },
        },
      ],
      destinations: [{ name: 'orthanc-stow', type: 'stow-rs', node: 'orthanc' }],
      defaultDestination: 'orthanc-stow',
    });
    const gw = t;
    const retrieves = async () =>
      (
        await gw.gw.db.pool.query<{ at: Date; detail: { stored: number; lateSeries?: string[] } }>(
          `SELECT occurred_at AS at, detail FROM audit_events WHERE kind = 'remote-retrieve' AND study_instance_uid = $1 ORDER BY id`,
          [study],
        )
      ).rows;

    // The first poll retrieves the first half.
    const [r1] = await waitFor('first half retrieved', async () => {
      const r = await retrieves();
      return r.length >= 1 ? r : undefined;
    });
    expect(r1?.detail.stored).toBe(2);
    // Let a few incremental polls pass without changes, then the second half arrives at the PACS.
    await new Promise((r) => setTimeout(r, POLL_MS * 4));
    expect(await retrieves()).toHaveLength(1);
    const sentSecond = Date.now();
    expect(
      (
        await pacs.storeInstances(
          undefined,
          h2.map((ids) => instanceAt(ids, at)),
        )
      ).failed,
    ).toEqual([]);
    const [, r2] = await waitFor('second half retrieved', async () => {
      const r = await retrieves();
      return r.length >= 2 ? r : undefined;
    });
    expect(r2?.detail).toMatchObject({ stored: 2, lateSeries: [h2[0]?.series] });
    // Honest timing: the second half was stored before the first half's inactivity window ended, so
    // no job can have been queued for the first half alone.
    const r2At = new Date(r2?.at as Date).getTime();
    expect(r2At).toBeGreaterThanOrEqual(sentSecond - 1000);
    expect(r2At - new Date(r1?.at as Date).getTime()).toBeLessThan(WINDOW_MS);

    // One SR in the PACS, one job, version 1, evidence over all four instances.
    const sr = await waitFor(
      'the draft SR in Orthanc',
      async () => {
        const hits = await pacs.searchForInstances(study, undefined, { SOPClassUID: SR_SOP_CLASS });
        return hits.length >= 1 ? hits : undefined;
      },
      120_000,
    );
    // Polling on: still one SR, one job.
    await new Promise((r) => setTimeout(r, POLL_MS * 6));
    expect(await pacs.searchForInstances(study, undefined, { SOPClassUID: SR_SOP_CLASS })).toHaveLength(1);
    const jobs = await gw.gw.db.pool.query<{ state: string; result: { studyVersion: number } | null }>(
      'SELECT state, result FROM jobs WHERE study_instance_uid = $1',
      [study],
    );
    expect(jobs.rows.map((j) => [j.state, j.result?.studyVersion])).toEqual([['succeeded', 1]]);
    const srUid = getString(sr[0] ?? {}, Tag.SOPInstanceUID) as string;
    const seriesUid = getString(sr[0] ?? {}, Tag.SeriesInstanceUID) as string;
    const bytes: Buffer[] = [];
    await pacs.retrieveInstance(study, seriesUid, srUid, {
      onInstance: async (body) => {
        for await (const chunk of body as AsyncIterable<Buffer>) bytes.push(Buffer.from(chunk));
      },
    });
    const file = path.join(dir, 'sr.dcm');
    writeFileSync(file, Buffer.concat(bytes));
    const doc = readSr(readFileSync(file));
    expect(doc.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid).sort()).toEqual(
      [...h1, ...h2].map((i) => i.sop).sort(),
    );
    expect(doc.predecessorDocuments).toEqual([]);
    const row = await gw.gw.db.pool.query('SELECT version, instance_count FROM studies WHERE study_instance_uid = $1', [
      study,
    ]);
    expect(row.rows).toEqual([{ version: 1, instance_count: 4 }]);
    expect(await retrieves()).toHaveLength(2);
    // The study was queued once, after the second half was stored.
    const queued = await gw.gw.db.pool.query<{ at: Date }>(
      `SELECT occurred_at AS at FROM audit_events WHERE kind = 'study-queued' AND study_instance_uid = $1`,
      [study],
    );
    expect(queued.rows).toHaveLength(1);
    expect(new Date(queued.rows[0]?.at as Date).getTime()).toBeGreaterThan(r2At);
  });
});
