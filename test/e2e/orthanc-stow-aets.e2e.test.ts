import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { instanceIdentity, parsePart10 } from '../../src/dicom/dataset.js';
import { createApiToken } from '../../src/http/auth/api-tokens.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';
import {
  type OrthancHandle,
  orthancAuthHeader,
  orthancAvailable,
  orthancRest as orthancRestCall,
  startOrthanc,
} from '../support/orthanc.js';

/**
 * (issue 11, DICOMweb) Orthanc 1.10 + orthanc-dicomweb as the DICOMweb client of a per-AE path: its
 * DicomWeb "Servers" entry is RadScribe's /dicomweb/aets/CT_AI/ with an ingest token scoped to that
 * path. Orthanc's STOW-RS push is received as sent to CT_AI (the local AE of the DIMSE listener):
 * called AE on every row and audit event, bytes unchanged. Then Orthanc forgets the studies and
 * fetches them back with its WADO-RS client (`/dicom-web/servers/…/retrieve`) from the same per-AE
 * service: what RadScribe serves is what Orthanc sent, byte for byte, and each retrieve is audited.
 * Orthanc binds all interfaces: runs only in the private network namespace (test/run-tests.sh).
 */
jest.setTimeout(180_000);

const avail = orthancAvailable();
if (!avail.ok) console.warn(`orthanc-stow-aets e2e skipped: ${avail.reason}`);
const d = avail.ok ? describe.each(backends()) : describe.skip.each(backends());

const dcm = (name: string): string => path.join(FIXTURES_DIR, 'dicom', name);
// Two studies, one native (Explicit VR Little Endian), one RLE Lossless.
const FILES = [dcm('CT_small.dcm'), dcm('SC_rgb_rle.dcm')];
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

d('Orthanc pushing to and retrieving from /dicomweb/aets/CT_AI (%s)', (backend) => {
  let t: TestGateway;
  let orthanc: OrthancHandle;

  beforeAll(async () => {
    t = await startTestGateway(backend, {
      dimse: { listeners: [{ aeTitle: 'CT_AI', port: 0, host: '127.0.0.1' }] },
    });
    const token = await createApiToken(t.gw.db.pool, {
      name: 'orthanc ct-ai',
      role: 'ingest',
      scopes: ['/dicomweb/aets/CT_AI'],
      createdBy: 'test',
    });
    orthanc = await startOrthanc({
      dicomWebServers: {
        radscribe: {
          Url: `${t.gw.baseUrl}/dicomweb/aets/CT_AI/`,
          HttpHeaders: { Authorization: `Bearer ${token.secret}` },
        },
      },
    });
  });
  afterAll(async () => {
    await orthanc?.stop();
    await t?.close();
  });

  const orthancRest = (method: string, p: string, body?: Buffer | string) => orthancRestCall(orthanc, method, p, body);

  test('STOW-RS from Orthanc lands as sent to CT_AI; Orthanc retrieves it back byte-exact by WADO-RS', async () => {
    const orthancStudies = new Set<string>();
    for (const f of FILES) {
      const up = await orthancRest('POST', '/instances', readFileSync(f));
      expect(up.status).toBe(200);
      orthancStudies.add((up.json as { ParentStudy: string }).ParentStudy);
    }
    const pushed = await orthancRest(
      'POST',
      '/dicom-web/servers/radscribe/stow',
      JSON.stringify({ Resources: [...orthancStudies], Synchronous: true }),
    );
    expect(pushed).toMatchObject({ status: 200 });

    const ids = FILES.map((f) => ({ bytes: readFileSync(f), id: instanceIdentity(parsePart10(readFileSync(f))) }));
    for (const { bytes, id } of ids) {
      const { rows } = await t.gw.db.pool.query<{ file_sha256: string; received_via: string; called_ae_title: string }>(
        'SELECT file_sha256, received_via, called_ae_title FROM instances WHERE sop_instance_uid = $1',
        [id.sopInstanceUid],
      );
      expect(rows).toEqual([{ file_sha256: sha256(bytes), received_via: 'stow-rs', called_ae_title: 'CT_AI' }]);
      const audit = await t.gw.db.pool.query<{ detail: { via: string; calledAeTitle: string } }>(
        `SELECT detail FROM audit_events WHERE kind = 'instance-received' AND $1 = ANY(sop_instance_uids)`,
        [id.sopInstanceUid],
      );
      expect(audit.rows.map((r) => [r.detail.via, r.detail.calledAeTitle])).toEqual([['stow-rs', 'CT_AI']]);
    }

    // Orthanc forgets the studies, then asks RadScribe's per-AE WADO-RS for them.
    for (const s of orthancStudies) expect((await orthancRest('DELETE', `/studies/${s}`)).status).toBe(200);
    expect((await orthancRest('GET', '/instances')).json).toEqual([]);
    const retrieved = await orthancRest(
      'POST',
      '/dicom-web/servers/radscribe/retrieve',
      JSON.stringify({ Resources: ids.map(({ id }) => ({ Study: id.studyInstanceUid })), Synchronous: true }),
    );
    expect(retrieved.status).toBe(200);
    for (const { bytes, id } of ids) {
      const found = await orthancRest('POST', '/tools/lookup', id.sopInstanceUid);
      const orthancId = (found.json as { ID: string; Type: string }[]).find((r) => r.Type === 'Instance')?.ID;
      expect({ sop: id.sopInstanceUid, found: orthancId !== undefined }).toEqual({
        sop: id.sopInstanceUid,
        found: true,
      });
      const file = await fetch(`${orthanc.restUrl}/instances/${orthancId}/file`, {
        headers: { authorization: orthancAuthHeader(orthanc) },
      });
      expect(sha256(Buffer.from(await file.arrayBuffer()))).toBe(sha256(bytes));
    }
    const served = await t.gw.db.pool.query<{
      outcome: number;
      study_instance_uid: string;
      detail: { calledAeTitle: string };
    }>(`SELECT outcome, study_instance_uid, detail FROM audit_events WHERE kind = 'instances-retrieved' ORDER BY id`);
    expect(
      served.rows
        .filter((r) => r.outcome === 0)
        .map((r) => r.study_instance_uid)
        .sort(),
    ).toEqual(ids.map(({ id }) => id.studyInstanceUid).sort());
    expect(served.rows.every((r) => r.detail.calledAeTitle === 'CT_AI')).toBe(true);
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
  });
});
