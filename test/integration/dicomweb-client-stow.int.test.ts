import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { FailureReason } from '../../src/ingest/types.js';
import type { DicomJsonDataset } from '../../src/pacs/dicom-json.js';
import { getNumber, getSequence, getString, Tag } from '../../src/pacs/dicom-json.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * [REQ-STOW-21] (issue 9) A STOW-RS client nobody here wrote: dcmjs-org/dicomweb-client 0.11.3
 * (`api.DICOMwebClient#storeInstances`, the OHIF viewer's client) over the `xhr2` XMLHttpRequest
 * polyfill, against a real gateway. It writes `boundary="<uuid>"` quoted and ends the body with
 * `--boundary--` and no CRLF; the instances must be stored (rows + files), audited, and a partial
 * failure reported per instance in the Failed SOP Sequence (PS3.18 §10.5.3).
 */
jest.setTimeout(120_000);

interface DicomwebClientApi {
  storeInstances(options: { datasets: ArrayBuffer[]; studyInstanceUID?: string }): Promise<unknown>;
}
interface ClientError extends Error {
  status: number;
  response: unknown;
}
// Untyped CommonJS packages (devDependencies); tests are compiled to CJS.
const { api } = require('dicomweb-client') as {
  api: {
    DICOMwebClient: new (o: { url: string; verbose?: boolean; headers?: Record<string, string> }) => DicomwebClientApi;
  };
};
const XHR2 = require('xhr2') as unknown;

const dcm = (name: string): string => path.join(FIXTURES_DIR, 'dicom', name);
const FREN = dcm('chrFren.dcm');
const GERM = dcm('chrGerm.dcm');
const RLE = dcm('SC_rgb_rle.dcm');
const STUDY_RLE = '1.2.826.0.1.3680043.8.498.12406831542731051035295345080039845114';

function arrayBuffer(file: string): ArrayBuffer {
  const b = readFileSync(file);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const parse = (response: unknown): DicomJsonDataset =>
  JSON.parse(
    typeof response === 'string' ? response : Buffer.from(response as ArrayBuffer).toString(),
  ) as DicomJsonDataset;

describe.each(backends())('dicomweb-client storeInstances → RadScribe (%s)', (backend) => {
  let t: TestGateway;
  let client: DicomwebClientApi;
  const saved = (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest;
  beforeAll(async () => {
    (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest = XHR2;
    t = await startTestGateway(backend);
    client = new api.DICOMwebClient({ url: `${t.gw.baseUrl}/dicomweb`, verbose: false, headers: t.auth('ingest') });
  });
  afterAll(async () => {
    (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest = saved;
    await t?.close();
  });

  const row = async (sop: string) =>
    (
      await t.gw.db.pool.query<{ file_path: string; file_sha256: string; received_via: string }>(
        'SELECT file_path, file_sha256, received_via FROM instances WHERE sop_instance_uid = $1',
        [sop],
      )
    ).rows[0];

  test('two instances in one request → 200, rows, byte-exact files, instance-received audited', async () => {
    const res = parse(await client.storeInstances({ datasets: [arrayBuffer(FREN), arrayBuffer(GERM)] }));
    const uids = getSequence(res, Tag.ReferencedSOPSequence).map((i) => getString(i, Tag.ReferencedSOPInstanceUID));
    expect(uids).toEqual([
      '1.3.6.1.4.1.5962.1.1.0.1.1.1175775772.5720.0',
      '1.3.6.1.4.1.5962.1.1.0.1.1.1175775772.5723.0',
    ]);
    expect(getSequence(res, Tag.FailedSOPSequence)).toEqual([]);
    for (const [uid, file] of [
      [uids[0], FREN],
      [uids[1], GERM],
    ] as const) {
      const r = await row(uid as string);
      expect(r).toMatchObject({ file_sha256: sha256(file), received_via: 'stow-rs' });
      expect(
        createHash('sha256')
          .update(readFileSync(r?.file_path as string))
          .digest('hex'),
      ).toBe(sha256(file));
    }
    const audit = await t.gw.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_events WHERE kind = 'instance-received' AND outcome = 0
         AND sop_instance_uids && $1::text[]`,
      [uids],
    );
    expect(audit.rows[0]?.n).toBe(2);
  });

  test('a valid and a garbage instance → 202 (resolved), the garbage one 0xC000 and instance-refused', async () => {
    const garbage = new TextEncoder().encode('not a DICOM file, but sent as application/dicom').buffer as ArrayBuffer;
    const res = parse(await client.storeInstances({ datasets: [arrayBuffer(RLE), garbage] }));
    expect(getSequence(res, Tag.ReferencedSOPSequence)).toHaveLength(1);
    const failed = getSequence(res, Tag.FailedSOPSequence);
    expect(failed.map((f) => getNumber(f, Tag.FailureReason))).toEqual([FailureReason.CannotUnderstand]);
    const refused = await t.gw.db.pool.query<{ detail: { failureReason: number; sha256: string } }>(
      `SELECT detail FROM audit_events WHERE kind = 'instance-refused' AND outcome = 8 ORDER BY id DESC LIMIT 1`,
    );
    expect(refused.rows[0]?.detail.failureReason).toBe(FailureReason.CannotUnderstand);
    expect(refused.rows[0]?.detail.sha256).toBe(createHash('sha256').update(Buffer.from(garbage)).digest('hex'));
  });

  test('an instance of another study than the URL names → 409 (rejected), 0xA900 with its UIDs', async () => {
    const err = (await client.storeInstances({ datasets: [arrayBuffer(FREN)], studyInstanceUID: STUDY_RLE }).then(
      () => undefined,
      (e: unknown) => e,
    )) as ClientError | undefined;
    expect(err?.status).toBe(409);
    const failed = getSequence(parse(err?.response), Tag.FailedSOPSequence);
    expect(failed).toHaveLength(1);
    expect(getNumber(failed[0] as DicomJsonDataset, Tag.FailureReason)).toBe(FailureReason.DataSetDoesNotMatchSopClass);
    expect(getString(failed[0] as DicomJsonDataset, Tag.ReferencedSOPInstanceUID)).toBe(
      '1.3.6.1.4.1.5962.1.1.0.1.1.1175775772.5720.0',
    );
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
  });
});
