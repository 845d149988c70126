import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { buildEncapsulatedPdf } from '../../src/dicom/pdf/encapsulated-pdf.js';
import { loadPdfFonts } from '../../src/dicom/pdf/fonts.js';
import { buildDraftSr } from '../../src/dicom/sr/draft-sr.js';
import { findingTexts, readSr } from '../../src/dicom/sr/reader.js';
import { writePart10 } from '../../src/dicom/sr/sr-document.js';
import { SopClass } from '../../src/dicom/uids.js';
import { Delivery, StowRsDestination } from '../../src/export/sr-destination.js';
import { JobQueue } from '../../src/jobs/job-queue.js';
import { JobKind } from '../../src/jobs/types.js';
import { getString, Tag } from '../../src/pacs/dicom-json.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { FIXTURE_TEXT_PREFIX } from '../../src/pipeline/describe-images.js';
import { startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../support/orthanc.js';
import { paramsFor, sibling, sourceHeader } from '../unit/dicom/sr/sr-fixtures.js';

/**
 * [issue 11, issue 15] STOW-RS export against a real Orthanc 1.10 + orthanc-dicomweb 1.7 (in the
 * private network namespace, test/run-tests.sh), through the whole gateway: STOW-RS in → job →
 * model → draft SR → STOW-RS out.
 *
 * What Orthanc does with a second STOW-RS of a SOP Instance UID it holds (found here, and in the
 * exploration for issue 11): HTTP 200, the instance in the Referenced SOP Sequence, no Warning
 * Reason, no Failed SOP Sequence, no HTTP Warning — whatever the content. With OverwriteInstances
 * false (its default, and this test's) it keeps the copy it had; with true it replaces it. The
 * response never tells a duplicate, so the gateway reads the copy back (WADO-RS metadata) after each
 * send (StowRsDestination, VerifyStored.Always) and compares the content fingerprint.
 *
 * (a) a re-run whose SR is identical to the copy in Orthanc: success, one copy;
 * (b) a copy in Orthanc with the same SOP Instance UID and other finding text: the job fails with
 *     export-conflict at once, the audit event has outcome 8 and says why, Orthanc keeps its copy;
 * (c) a slow receiver (a real HTTP proxy in front of Orthanc that holds the first STOW-RS response
 *     past the gateway's store timeout, then answers 503 twice): the job's own resends are used
 *     up, the job is retried, and the retry resends the staged SR bytes: the model ran once, Orthanc
 *     holds exactly one copy;
 * (d) a partly failed multi-instance send (the SR and its PDF companion; a Lua ReceivedInstanceFilter
 *     refuses the PDF once): Orthanc's STOW-RS answer still lists the refused PDF as stored — the
 *     plugin reports a filtered-out instance in the Referenced SOP Sequence — so only the read-back
 *     finds it missing (404, transient); the destination resends the PDF alone.
 */
jest.setTimeout(240_000);

const avail = orthancAvailable();
const d = avail.ok ? describe : describe.skip;
if (!avail.ok) console.warn(`stow-export-orthanc e2e skipped: ${avail.reason}`);

const SR_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.88.33';
const fixture = (name: string) => path.join(__dirname, '../fixtures/dicom', name);

interface SlowProxy {
  readonly url: string;
  readonly stowPosts: () => number;
  close(): Promise<void>;
}

/**
 * A real HTTP proxy in front of Orthanc: the first STOW-RS POST is forwarded (Orthanc stores the
 * SR) but its answer is held `holdMs` before it is passed on; the next `refuse` POSTs get 503
 * without reaching Orthanc; everything else passes through.
 */
async function slowProxy(target: string, holdMs: number, refuse: number): Promise<SlowProxy> {
  let posts = 0;
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    const isStow = req.method === 'POST';
    const n = isStow ? ++posts : 0;
    if (isStow && n >= 2 && n <= 1 + refuse) {
      req.resume();
      req.on('end', () => res.writeHead(503, { 'retry-after': '1' }).end());
      return;
    }
    const up = http.request(
      `${target}${req.url}`,
      { method: req.method, headers: { ...req.headers, host: new URL(target).host } },
      (upRes) => {
        const pass = () => {
          if (res.destroyed) {
            upRes.resume();
            return;
          }
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        };
        if (isStow && n === 1) setTimeout(pass, holdMs);
        else pass();
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stowPosts: () => posts,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

d('STOW-RS export to Orthanc: duplicates, conflicts and a slow receiver', () => {
  let orthanc: OrthancHandle;
  let pacs: DicomwebClient;
  let authHeader: string;
  beforeAll(async () => {
    orthanc = await startOrthanc({ overwriteInstances: false });
    pacs = new DicomwebClient({ baseUrl: orthanc.baseUrl, auth: { type: 'basic', ...orthanc.auth } });
    authHeader = `Basic ${Buffer.from(`${orthanc.auth.username}:${orthanc.auth.password}`).toString('base64')}`;
    process.env.RADSCRIBE_TEST_ORTHANC_PASSWORD = orthanc.auth.password;
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  const overrides = (baseUrl: string, extra: Record<string, unknown> = {}) => ({
    remoteNodes: [
      {
        name: 'orthanc',
        baseUrl,
        auth: { type: 'basic', username: orthanc.auth.username, passwordEnv: 'RADSCRIBE_TEST_ORTHANC_PASSWORD' },
        poll: { enabled: false },
        ...extra,
      },
    ],
    destinations: [{ name: 'orthanc-stow', type: 'stow-rs', node: 'orthanc' }],
    defaultDestination: 'orthanc-stow',
    jobs: { pollIntervalMs: 100, backoffBaseMs: 200, backoffMaxMs: 1_000, maxAttempts: 5 },
  });

  async function pushToGateway(t: TestGateway, file: string): Promise<void> {
    const gw = new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      auth: { type: 'bearer', token: t.tokens.ingest },
    });
    expect((await gw.storeInstances(undefined, [file])).httpStatus).toBe(200);
  }

  async function jobDone(t: TestGateway, id: number) {
    return waitFor(
      `job ${id} finished`,
      async () => {
        const { rows } = await t.gw.db.pool.query<{ state: string; error_code: string | null; attempts: number }>(
          `SELECT state, error_code, attempts FROM jobs WHERE id = $1`,
          [id],
        );
        const r = rows[0];
        return r && (r.state === 'succeeded' || r.state === 'failed') ? r : undefined;
      },
      180_000,
    );
  }

  async function firstJob(t: TestGateway, study: string): Promise<number> {
    return waitFor('describe-study job', async () => {
      const { rows } = await t.gw.db.pool.query<{ id: string }>(
        `SELECT id FROM jobs WHERE study_instance_uid = $1 ORDER BY id LIMIT 1`,
        [study],
      );
      return rows[0] ? Number(rows[0].id) : undefined;
    });
  }

  async function rerun(t: TestGateway, study: string): Promise<number> {
    const job = await new JobQueue(t.gw.db.pool).enqueue(t.gw.db.pool, {
      kind: JobKind.DescribeStudy,
      studyInstanceUid: study,
      payload: { trigger: 'manual' },
    });
    if (!job) throw new Error('re-run not enqueued');
    return job.id;
  }

  async function srsInOrthanc(study: string) {
    return pacs.searchForInstances(study, undefined, { SOPClassUID: SR_SOP_CLASS });
  }

  async function orthancCopy(study: string, series: string, sop: string): Promise<Uint8Array> {
    const chunks: Buffer[] = [];
    await pacs.retrieveInstance(study, series, sop, {
      onInstance: async (body) => {
        for await (const c of body) chunks.push(c as Buffer);
      },
    });
    return new Uint8Array(Buffer.concat(chunks));
  }

  async function inferenceRuns(t: TestGateway, study: string): Promise<number> {
    const { rows } = await t.gw.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_events WHERE kind = 'inference-run' AND study_instance_uid = $1`,
      [study],
    );
    return rows[0]?.n ?? -1;
  }

  it('(a) identical copy already in Orthanc → success, one copy; (b) other content under the UID → export-conflict, audited', async () => {
    const file = fixture('CT_small.dcm');
    const study = String(parsePart10(readFileSync(file)).dataset.StudyInstanceUID);
    let t: TestGateway | undefined;
    try {
      t = await startTestGateway('pglite', overrides(orthanc.baseUrl));
      await pushToGateway(t, file);
      const first = await jobDone(t, await firstJob(t, study));
      expect(first).toMatchObject({ state: 'succeeded' });
      const [hit] = await srsInOrthanc(study);
      const sop = getString(hit ?? {}, Tag.SOPInstanceUID) as string;
      const series = getString(hit ?? {}, Tag.SeriesInstanceUID) as string;

      // (a) The same study again: the same draft under the same UID, which Orthanc already holds.
      const again = await jobDone(t, await rerun(t, study));
      expect(again).toMatchObject({ state: 'succeeded', attempts: 1 });
      expect(await srsInOrthanc(study)).toHaveLength(1);
      const ok = await t.gw.db.pool.query<{ outcome: number; detail: { delivery: string } }>(
        `SELECT outcome, detail FROM audit_events WHERE kind = 'sr-exported' AND $1 = ANY(sop_instance_uids) ORDER BY id`,
        [sop],
      );
      expect(ok.rows.map((r) => [r.outcome, r.detail.delivery])).toEqual([
        [0, 'stored'],
        [0, 'stored'],
      ]);

      // (b) Replace Orthanc's copy with one whose finding says something else, under the same UID
      // (delete, then upload over Orthanc's REST API).
      const original = await orthancCopy(study, series, sop);
      const ds = parsePart10(original).dataset as Record<string, unknown>;
      let replaced = 0;
      const edit = (items: unknown): void => {
        for (const item of (items as Record<string, unknown>[] | undefined) ?? []) {
          if (typeof item.TextValue === 'string' && item.TextValue.startsWith(FIXTURE_TEXT_PREFIX)) {
            item.TextValue = `${FIXTURE_TEXT_PREFIX}a different finding under the same UID`;
            replaced++;
          }
          edit(item.ContentSequence);
        }
      };
      edit(ds.ContentSequence);
      expect(replaced).toBeGreaterThan(0);
      const lookup = await fetch(`${orthanc.restUrl}/tools/lookup`, {
        method: 'POST',
        body: sop,
        headers: { authorization: authHeader },
      });
      const ID = ((await lookup.json()) as { ID: string }[])[0]?.ID;
      expect(ID).toBeDefined();
      expect(
        (
          await fetch(`${orthanc.restUrl}/instances/${ID}`, {
            method: 'DELETE',
            headers: { authorization: authHeader },
          })
        ).status,
      ).toBe(200);
      const up = await fetch(`${orthanc.restUrl}/instances`, {
        method: 'POST',
        body: Buffer.from(writePart10(ds)),
        headers: { authorization: authHeader, 'content-type': 'application/dicom' },
      });
      expect(up.status).toBe(200);

      const conflicted = await jobDone(t, await rerun(t, study));
      // Permanent: the job fails on its first attempt, with the code that says why.
      expect(conflicted).toMatchObject({ state: 'failed', error_code: 'export-conflict', attempts: 1 });
      const bad = await t.gw.db.pool.query<{
        outcome: number;
        detail: { code: string; reason: string; differences: string[] };
      }>(
        `SELECT outcome, detail FROM audit_events WHERE kind = 'sr-exported' AND $1 = ANY(sop_instance_uids) ORDER BY id DESC LIMIT 1`,
        [sop],
      );
      expect(bad.rows[0]?.outcome).toBe(8);
      expect(bad.rows[0]?.detail.code).toBe('export-conflict');
      expect(bad.rows[0]?.detail.differences.some((p) => p.endsWith(':text'))).toBe(true);
      expect(bad.rows[0]?.detail.reason).toMatch(/holds other content/);
      // No finding text in the audit trail.
      expect(JSON.stringify(bad.rows[0]?.detail)).not.toContain('different finding');
      const ledger = await t.gw.db.pool.query<{ state: string; error_code: string }>(
        `SELECT state, error_code FROM sr_exports WHERE sop_instance_uid = $1`,
        [sop],
      );
      // The earlier export stays recorded as sent; the failure is on the row.
      expect(ledger.rows).toEqual([{ state: 'sent', error_code: 'export-conflict' }]);
      // Orthanc kept its copy (OverwriteInstances false): one instance, the other text.
      expect(await srsInOrthanc(study)).toHaveLength(1);
      const kept = readSr(await orthancCopy(study, series, sop));
      expect(findingTexts(kept).map((f) => f.text)).toEqual([
        `${FIXTURE_TEXT_PREFIX}a different finding under the same UID`,
      ]);
    } finally {
      await t?.close();
    }
  });

  it('(c) a slow receiver: the retry resends the staged SR, the model ran once, Orthanc holds one copy', async () => {
    const file = fixture('MR_small.dcm');
    const study = String(parsePart10(readFileSync(file)).dataset.StudyInstanceUID);
    const storeTimeoutMs = 1_500;
    // Held twice the store timeout: the gateway gives up on the answer while Orthanc has the SR.
    const proxy = await slowProxy(orthanc.restUrl, storeTimeoutMs * 2, 2);
    let t: TestGateway | undefined;
    try {
      t = await startTestGateway('pglite', overrides(`${proxy.url}/dicom-web`, { storeTimeoutMs }));
      await pushToGateway(t, file);
      const id = await firstJob(t, study);
      const done = await jobDone(t, id);
      // Attempt 1: timeout, 503, 503 (StowRsDestination's three sends); attempt 2: the staged resend.
      expect(done).toMatchObject({ state: 'succeeded', attempts: 2 });
      expect(proxy.stowPosts()).toBe(4);
      expect(await inferenceRuns(t, study)).toBe(1);
      const srs = await srsInOrthanc(study);
      expect(srs).toHaveLength(1);
      // Orthanc's copy is the staged bytes' content: the one the model wrote in attempt 1.
      const sop = getString(srs[0] ?? {}, Tag.SOPInstanceUID) as string;
      const events = await t.gw.db.pool.query<{ outcome: number; detail: { code?: string; delivery?: string } }>(
        `SELECT outcome, detail FROM audit_events WHERE kind = 'sr-exported' AND $1 = ANY(sop_instance_uids) ORDER BY id`,
        [sop],
      );
      expect(events.rows.map((e) => [e.outcome, e.detail.code ?? e.detail.delivery])).toEqual([
        [4, 'pacs-unavailable'],
        [0, 'stored'],
      ]);
      const row = await t.gw.db.pool.query<{ state: string; has_bytes: boolean; job_id: string }>(
        `SELECT state, part10 IS NOT NULL AS has_bytes, job_id FROM sr_exports WHERE sop_instance_uid = $1`,
        [sop],
      );
      expect(row.rows).toEqual([{ state: 'sent', has_bytes: false, job_id: String(id) }]);
    } finally {
      await t?.close();
      await proxy.close();
    }
  });

  it('(d) SR + PDF in one send, the PDF refused once: only the PDF is resent, both end in Orthanc', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rs-lua-'));
    const calls = path.join(dir, 'calls.log');
    const flag = path.join(dir, 'refused-once');
    const lua = path.join(dir, 'refuse-pdf-once.lua');
    // Orthanc Book lua.rst: ReceivedInstanceFilter returning false refuses the instance. The flag is a
    // file, not a Lua global: Orthanc may run the callback in more than one Lua context.
    writeFileSync(
      lua,
      `function ReceivedInstanceFilter(dicom, origin, info)
  local log = io.open('${calls}', 'a')
  log:write(dicom.SOPClassUID .. '\\n')
  log:close()
  if dicom.SOPClassUID == '${SopClass.EncapsulatedPdfStorage}' then
    local f = io.open('${flag}', 'r')
    if f == nil then
      io.open('${flag}', 'w'):close()
      return false
    end
    f:close()
  end
  return true
end
`,
    );
    const lorthanc = await startOrthanc({ luaScripts: [lua] });
    try {
      const client = new DicomwebClient({ baseUrl: lorthanc.baseUrl, auth: { type: 'basic', ...lorthanc.auth } });
      const ct = sourceHeader('CT_small.dcm');
      const sr = buildDraftSr(paramsFor([ct, sibling(ct, 1)], ['one finding']));
      const pdf = await buildEncapsulatedPdf({ sr, fonts: loadPdfFonts() });
      const study = String(ct.StudyInstanceUID);
      const dest = new StowRsDestination('orthanc', client, lorthanc.baseUrl, { backoffBaseMs: 50 });
      const out = await dest.sendAll([
        { studyInstanceUid: study, sopInstanceUid: sr.sopInstanceUid, part10: sr.part10 },
        { studyInstanceUid: study, sopInstanceUid: pdf.sopInstanceUid, part10: pdf.part10 },
      ]);
      expect(out.map((r) => (r.ok ? r.delivery : r.error.code))).toEqual([Delivery.Stored, Delivery.Stored]);
      expect(existsSync(flag)).toBe(true);
      // What reached Orthanc's filter: the SR once, the PDF twice (refused, then resent alone).
      const seen = readFileSync(calls, 'utf8').trim().split('\n');
      expect(seen).toEqual([SR_SOP_CLASS, SopClass.EncapsulatedPdfStorage, SopClass.EncapsulatedPdfStorage]);
      const held = await client.searchForInstances(study, sr.seriesInstanceUid);
      expect(held.map((i) => getString(i, Tag.SOPInstanceUID)).sort()).toEqual(
        [sr.sopInstanceUid, pdf.sopInstanceUid].sort(),
      );
    } finally {
      await lorthanc.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
