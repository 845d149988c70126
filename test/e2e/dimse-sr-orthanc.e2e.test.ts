import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { readSr } from '../../src/dicom/sr/reader.js';
import { SopClass, TransferSyntax } from '../../src/dicom/uids.js';
import { startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../support/orthanc.js';

/**
 * [REQ-DIMSE-STORE-SCU] (issue 11) DIMSE in, DIMSE out: DCMTK storescu sends a study to the
 * gateway's DIMSE listener; the draft SR and its PDF companion go to Orthanc's DICOM port by C-STORE
 * on one association. Orthanc is set to accept only Implicit VR Little Endian and only stores from
 * the registered calling AE title, so the SR arrives converted and under the configured title.
 * Each object has its own `sr-exported` audit event with the location `dicom://AET@host:port`.
 * The model is the tiny random-weight test fixture (its text is noise; the pipeline is the subject).
 */
const avail = orthancAvailable();
const d = avail.ok ? describe : describe.skip;
if (!avail.ok) console.warn(`dimse-sr-orthanc e2e skipped: ${avail.reason}`);

const run = promisify(execFile);
const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
const sample = parsePart10(readFileSync(SAMPLE)).dataset;
const CALLING = 'RADSCRIBE_GW';

d('gateway DIMSE listener → draft SR by C-STORE into Orthanc', () => {
  let orthanc: OrthancHandle;
  let t: TestGateway;
  let authHeader: string;
  beforeAll(async () => {
    orthanc = await startOrthanc({
      extraConfig: {
        AcceptedTransferSyntaxes: [TransferSyntax.ImplicitVrLittleEndian],
        DicomAlwaysAllowStore: false,
        DicomModalities: { gateway: [CALLING, '127.0.0.1', 11112] },
      },
    });
    authHeader = `Basic ${Buffer.from(`${orthanc.auth.username}:${orthanc.auth.password}`).toString('base64')}`;
    t = await startTestGateway('postgresql', {
      dimse: { listeners: [{ aeTitle: 'RADSCRIBE', port: 0, host: '127.0.0.1' }] },
      destinations: [
        {
          name: 'orthanc-dimse',
          type: 'dimse',
          host: '127.0.0.1',
          port: orthanc.dicomPort,
          calledAeTitle: orthanc.aet,
          callingAeTitle: CALLING,
          pdfCompanion: true,
        },
      ],
      defaultDestination: 'orthanc-dimse',
    });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await orthanc?.stop();
  });

  async function rest<T>(p: string, init: RequestInit = {}): Promise<T> {
    const res = await fetch(`${orthanc.restUrl}${p}`, {
      ...init,
      headers: { authorization: authHeader, 'content-type': 'application/json' },
    });
    if (!res.ok) throw new Error(`Orthanc ${p}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  it('storescu → gateway → described → SR and PDF in Orthanc by C-STORE (Implicit VR LE), audited per object', async () => {
    const port = t.gw.dimseListeners[0]?.port;
    if (!port) throw new Error('no DIMSE listener');
    await run('storescu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '-xv', '127.0.0.1', String(port), SAMPLE], {
      timeout: 60_000,
    });
    const study = sample.StudyInstanceUID as string;
    const job = await waitFor(
      'describe-study job',
      async () => {
        const r = await t.gw.db.pool.query<{
          state: string;
          result: Record<string, unknown> | null;
          last_error: string;
        }>('SELECT state, result, last_error FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1', [
          study,
        ]);
        const j = r.rows[0];
        return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
      },
      180_000,
    );
    expect(job).toMatchObject({ state: 'succeeded' });
    const location = `dicom://${orthanc.aet}@127.0.0.1:${orthanc.dicomPort}`;
    expect(job.result).toMatchObject({ location });
    const srUid = job.result?.srSopInstanceUid as string;
    const pdfUid = job.result?.pdfSopInstanceUid as string;

    // Orthanc holds both, in the source study, as received (Implicit VR LE: all it accepts).
    const found = await rest<string[]>('/tools/find', {
      method: 'POST',
      body: JSON.stringify({ Level: 'Instance', Query: { StudyInstanceUID: study } }),
    });
    const byUid = new Map<string, string>();
    for (const id of found) {
      const tags = await rest<Record<string, string>>(`/instances/${id}/simplified-tags`);
      byUid.set(tags.SOPInstanceUID as string, id);
    }
    // Only the drafts: the source image went to the gateway, never to this PACS.
    expect([...byUid.keys()].sort()).toEqual([srUid, pdfUid].sort());
    const srId = byUid.get(srUid) as string;
    const srTs = await fetch(`${orthanc.restUrl}/instances/${srId}/metadata/TransferSyntax`, {
      headers: { authorization: authHeader },
    }).then((r) => r.text());
    expect(srTs).toBe(TransferSyntax.ImplicitVrLittleEndian);
    const remoteAet = await fetch(`${orthanc.restUrl}/instances/${srId}/metadata/RemoteAET`, {
      headers: { authorization: authHeader },
    }).then((r) => r.text());
    expect(remoteAet).toBe(CALLING);
    const res = await fetch(`${orthanc.restUrl}/instances/${srId}/file`, { headers: { authorization: authHeader } });
    const file = new Uint8Array(await res.arrayBuffer());
    const sr = readSr(file);
    expect(sr.studyInstanceUid).toBe(study);
    expect(sr.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid)).toEqual([sample.SOPInstanceUID]);
    const pdfTags = await rest<Record<string, string>>(`/instances/${byUid.get(pdfUid)}/simplified-tags`);
    expect(pdfTags.SOPClassUID).toBe(SopClass.EncapsulatedPdfStorage);

    const audit = await t.gw.db.pool.query<{ outcome: number; destination: string; detail: Record<string, unknown> }>(
      `SELECT outcome, destination, detail FROM audit_events WHERE kind = 'sr-exported' ORDER BY id`,
    );
    expect(audit.rows).toEqual([
      expect.objectContaining({
        destination: 'orthanc-dimse',
        detail: expect.objectContaining({ location, object: 'sr' }),
      }),
      expect.objectContaining({
        destination: 'orthanc-dimse',
        detail: expect.objectContaining({ location, object: 'pdf' }),
      }),
    ]);
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
  });
});
