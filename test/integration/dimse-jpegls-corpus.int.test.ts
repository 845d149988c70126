import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AuditRecorder } from '../../src/audit/audit-recorder.js';
import { StorageScp } from '../../src/dimse/storage-scp.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { hasTool } from '../support/sr-validation.js';
import { readCorpusManifest } from '../unit/dicom/corpus-manifest.js';

/**
 * Every JPEG-LS file of the corpus (test/fixtures/corpus, MANIFEST.tsv `ts:jpeg-ls-*`) sent by DCMTK
 * storescu to the C-STORE SCP in its own transfer syntax (-xt lossless .80, -xu near-lossless .81).
 * A note from an earlier session said "two JPEG-LS corpus files are refused with C000". They are
 * five, and not for their pixel data: JLSL_08_07_0_1F, JPEGLSNearLossless_08/_16 and
 * SC_rgb_jls_lossy_line/_sample (pydicom test files: a SOP Class, a SOP Instance and the image
 * pixel attributes, nothing more) carry no StudyInstanceUID (0020,000D) nor SeriesInstanceUID (0020,000E),
 * Type 1 in the General Study and General Series modules (PS3.3 C.7.2.1, C.7.3.1; dciodvfy says so
 * too). An instance RadScribe cannot file under a study is refused with C000 (cannot understand;
 * docs/conformance-statement.md, C-STORE statuses) and audited as instance-refused, dicom-invalid.
 * Their JPEG-LS streams decode (the corpus decode tests). A file whose SOP Instance UID an earlier
 * file of the list already delivered with other bytes (CT1_UNC.fragmented_bot / _no_bot: the same
 * instance, fragmented differently) is refused 0x0111 (same UID, other content). Files storescu
 * itself does not send are named below with the reason; they never reach the SCP.
 */
jest.setTimeout(180_000);

const run = promisify(execFile);
const CORPUS = path.join(__dirname, '..', 'fixtures', 'corpus');
const AET = 'RADSCRIBE';

/** No Study/Series Instance UID: refused 0xC000. */
const NO_STUDY_UID = new Set([
  'compressed/JLSL_08_07_0_1F.dcm',
  'compressed/JPEGLSNearLossless_08.dcm',
  'compressed/JPEGLSNearLossless_16.dcm',
  'compressed/SC_rgb_jls_lossy_line.dcm',
  'compressed/SC_rgb_jls_lossy_sample.dcm',
]);
/** storescu does not send these: its own reasons, not RadScribe's. */
const NOT_SENT_BY_STORESCU: Readonly<Record<string, string>> = {
  'compressed/JLSL_RGB_ILV0.dcm': 'no SOP Class/Instance UID in the file',
  'compressed/JLSL_RGB_ILV1.dcm': 'no SOP Class/Instance UID in the file',
  'compressed/JLSL_RGB_ILV2.dcm': 'no SOP Class/Instance UID in the file',
  'compressed/sm_image_jpegls.dcm': 'VL Whole Slide Microscopy is not among the SOP classes storescu proposes',
  'compressed/sm_image_jpegls_nobot.dcm': 'VL Whole Slide Microscopy is not among the SOP classes storescu proposes',
};

const tools = hasTool('storescu') && hasTool('dcmdump');
const d = tools ? describe : describe.skip;

async function sh(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err: unknown) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

d(`JPEG-LS corpus by C-STORE (${backendName()})`, () => {
  let db: TestDatabase;
  let work: string;
  let scp: StorageScp;
  beforeAll(async () => {
    db = await testDatabase();
    work = mkdtempSync(path.join(tmpdir(), 'radscribe-jls-'));
    mkdirSync(path.join(work, 'tmp'));
    scp = new StorageScp({
      listener: { aeTitle: AET, port: 0, host: '127.0.0.1' },
      sink: new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') }),
      tmpDir: path.join(work, 'tmp'),
      pool: db.pool,
      refusals: new AuditRecorder(db.pool),
    });
    await scp.start();
  });
  afterAll(async () => {
    await scp?.close();
    await db?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const files = readCorpusManifest()
    .filter((r) => /ts:jpeg-ls-(near-)?lossless/.test(r.category))
    .map((r) => ({ file: r.file, nearLossless: r.category.includes('ts:jpeg-ls-near-lossless') }));

  it('lists the JPEG-LS files (so an empty filter cannot pass)', () => {
    expect(files.length).toBeGreaterThanOrEqual(20);
    for (const f of [...NO_STUDY_UID, ...Object.keys(NOT_SENT_BY_STORESCU)])
      expect(files.map((x) => x.file)).toContain(f);
  });

  /** SOP Instance UID → the file that delivered it. */
  const delivered = new Map<string, string>();

  it.each(files)('$file', async ({ file, nearLossless }) => {
    const src = path.join(CORPUS, file);
    const r = await sh('storescu', [
      '-v',
      '-aec',
      AET,
      nearLossless ? '-xu' : '-xt',
      '127.0.0.1',
      String(scp.port),
      src,
    ]);
    const status = r.out.match(/Received Store Response \(([^)]*)\)/)?.[1];
    const skip = NOT_SENT_BY_STORESCU[file];
    if (skip) {
      expect(status).toBeUndefined();
      expect(r.code).not.toBe(0);
      return;
    }
    const dump = (await sh('dcmdump', ['-q', '+P', '0020,000d', '+P', '0020,000e', '+P', '0008,0018', src])).out;
    const sop = dump.match(/\(0008,0018\) UI \[([^\]]+)\]/)?.[1] as string;
    // The cause, read by DCMTK: neither UID is there, exactly in the files listed.
    const hasUids = /\(0020,000d\) UI \[/.test(dump) && /\(0020,000e\) UI \[/.test(dump);
    expect(hasUids).toBe(!NO_STUDY_UID.has(file));
    if (NO_STUDY_UID.has(file)) {
      expect(status).toMatch(/Cannot ?understand/i);
      const refused = await db.pool.query<{ detail: { failureReason: number; errorCode: string } }>(
        `SELECT detail FROM audit_events WHERE kind = 'instance-refused' AND detail->>'via' = 'c-store' ORDER BY id DESC LIMIT 1`,
      );
      expect(refused.rows[0]?.detail).toMatchObject({ failureReason: 0xc000, errorCode: 'dicom-invalid' });
      return;
    }
    if (delivered.has(sop)) {
      // 0x0111 Duplicate SOP Instance (PS3.7 Annex C), which DCMTK prints as an unknown status: other content.
      expect(status).toMatch(/0x111\b/);
      return;
    }
    expect(status).toBe('Success');
    delivered.set(sop, file);
    const rows = await db.pool.query('SELECT 1 FROM instances WHERE sop_instance_uid = $1', [sop]);
    expect(rows.rows).toHaveLength(1);
  });
});
