import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { instanceIdentity, parsePart10 } from '../../src/dicom/dataset.js';
import { parseMediaType } from '../../src/pacs/media-type.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';
import {
  type OrthancHandle,
  orthancAvailable,
  orthancRest as orthancRestCall,
  startOrthanc,
} from '../support/orthanc.js';

/**
 * [REQ-STOW-22] (issue 9) Orthanc 1.10 + orthanc-dicomweb as the STOW-RS *client*: a DicomWeb
 * "Servers" entry points at the RadScribe gateway, a study is uploaded to Orthanc over its REST API,
 * and `POST /dicom-web/servers/radscribe/stow` pushes it. Orthanc writes a 73-character boundary
 * (two UUIDs, above RFC 2046's 70), which RadScribe used to refuse with 400; now every instance
 * must be stored byte for byte (rows + files) and audited. A second "Servers" entry points at a
 * recording HTTP server, so the test sees the Content-Type Orthanc really sends.
 * Orthanc binds all interfaces: runs only in the private network namespace (test/run-tests.sh).
 */
jest.setTimeout(180_000);

const avail = orthancAvailable();
if (!avail.ok) console.warn(`orthanc-stow-client e2e skipped: ${avail.reason}`);
const d = avail.ok ? describe.each(backends()) : describe.skip.each(backends());

const dcm = (name: string): string => path.join(FIXTURES_DIR, 'dicom', name);
// Two studies: SC_rgb_rle + SC_rgb_small_odd share one; CT_small (pydicom) is another.
const FILES = [dcm('SC_rgb_rle.dcm'), dcm('SC_rgb_small_odd.dcm'), dcm('CT_small.dcm')];
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Probe {
  readonly url: string;
  readonly requests: { contentType: string; bytes: number }[];
  close(): Promise<void>;
}

/** A DICOMweb "server" that records each STOW-RS request and answers 200 with an empty response. */
async function startProbe(): Promise<Probe> {
  const requests: Probe['requests'] = [];
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    req.on('end', () => {
      requests.push({ contentType: req.headers['content-type'] ?? '', bytes });
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/dicomweb/`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

d('Orthanc as STOW-RS client pushing into RadScribe (%s)', (backend) => {
  let t: TestGateway;
  let orthanc: OrthancHandle;
  let probe: Probe;

  beforeAll(async () => {
    t = await startTestGateway(backend);
    probe = await startProbe();
    orthanc = await startOrthanc({
      dicomWebServers: {
        // Orthanc's DICOMweb client sends the ingest token (plugin option HttpHeaders).
        radscribe: { Url: `${t.gw.baseUrl}/dicomweb/`, HttpHeaders: { Authorization: `Bearer ${t.tokens.ingest}` } },
        probe: { Url: probe.url },
      },
    });
  });
  afterAll(async () => {
    await orthanc?.stop();
    await probe?.close();
    await t?.close();
  });

  const orthancRest = (method: string, p: string, body?: Buffer | string) => orthancRestCall(orthanc, method, p, body);

  test('[REQ-STOW-22] POST /dicom-web/servers/radscribe/stow stores every instance byte-exact, audited', async () => {
    const studies = new Set<string>();
    for (const f of FILES) {
      const up = await orthancRest('POST', '/instances', readFileSync(f));
      expect(up.status).toBe(200);
      studies.add((up.json as { ParentStudy: string }).ParentStudy);
    }
    expect(studies.size).toBe(2);

    const pushed = await orthancRest(
      'POST',
      '/dicom-web/servers/radscribe/stow',
      JSON.stringify({ Resources: [...studies], Synchronous: true }),
    );
    expect(pushed).toMatchObject({ status: 200 });

    for (const f of FILES) {
      const bytes = readFileSync(f);
      const id = instanceIdentity(parsePart10(bytes));
      const { rows } = await t.gw.db.pool.query<{
        file_path: string;
        file_sha256: string;
        received_via: string;
        study_instance_uid: string;
      }>('SELECT file_path, file_sha256, received_via, study_instance_uid FROM instances WHERE sop_instance_uid = $1', [
        id.sopInstanceUid,
      ]);
      expect(rows).toHaveLength(1);
      const row = rows[0] as (typeof rows)[number];
      expect(row).toMatchObject({ received_via: 'stow-rs', study_instance_uid: id.studyInstanceUid });
      // Orthanc sends the file it stored, which is the file it received.
      expect(row.file_sha256).toBe(sha256(bytes));
      expect(sha256(readFileSync(row.file_path))).toBe(sha256(bytes));
      const audit = await t.gw.db.pool.query<{
        outcome: number;
        source: string;
        detail: { via: string; sha256: string };
      }>(
        `SELECT outcome, source, detail FROM audit_events WHERE kind = 'instance-received' AND $1 = ANY(sop_instance_uids)`,
        [id.sopInstanceUid],
      );
      expect(audit.rows).toHaveLength(1);
      expect(audit.rows[0]).toMatchObject({
        outcome: 0,
        source: '127.0.0.1',
        detail: { via: 'stow-rs', sha256: sha256(bytes) },
      });
    }
    const refused = await t.gw.db.pool.query(`SELECT 1 FROM audit_events WHERE kind = 'instance-refused'`);
    expect(refused.rows).toEqual([]);
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);

    // Pushing the same study again: identical resends are successes (duplicates), nothing doubles.
    const again = await orthancRest(
      'POST',
      '/dicom-web/servers/radscribe/stow',
      JSON.stringify({ Resources: [...studies], Synchronous: true }),
    );
    expect(again.status).toBe(200);
    const count = await t.gw.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM instances');
    expect(count.rows[0]?.n).toBe(FILES.length);
  });

  test('the boundary Orthanc writes is longer than RFC 2046 allows (why RadScribe accepts up to 256)', async () => {
    const study = (await orthancRest('GET', '/studies')).json as string[];
    const pushed = await orthancRest(
      'POST',
      '/dicom-web/servers/probe/stow',
      JSON.stringify({ Resources: study, Synchronous: true }),
    );
    // The probe answers with an empty response, which Orthanc may report as a failure; the request is what counts.
    expect(pushed.status).toBeGreaterThanOrEqual(200);
    expect(probe.requests.length).toBeGreaterThanOrEqual(1);
    const mt = parseMediaType(probe.requests[0]?.contentType ?? '');
    expect(mt.essence).toBe('multipart/related');
    expect(mt.params.type).toBe('application/dicom');
    const boundary = mt.params.boundary ?? '';
    process.stdout.write(`Orthanc STOW-RS boundary: ${boundary.length} characters\n`);
    expect(boundary.length).toBeGreaterThan(70);
    expect(boundary).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  });
});
