import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { InstanceRepository } from '../../src/ingest/instance-repository.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { PgRemoteStudyTracker } from '../../src/ingest/remote-study-tracker.js';
import { getStudy } from '../../src/ingest/study-lifecycle.js';
import { FailureReason, type ReceivedFile } from '../../src/ingest/types.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(60_000);

const FREN = path.join(FIXTURES_DIR, 'dicom', 'chrFren.dcm');
const GERM = path.join(FIXTURES_DIR, 'dicom', 'chrGerm.dcm');
const FREN_STUDY = '1.3.6.1.4.1.5962.1.2.0.1175775772.5720.0';
const FREN_SERIES = '1.3.6.1.4.1.5962.1.3.0.1.1175775772.5720.0';
const FREN_SOP = '1.3.6.1.4.1.5962.1.1.0.1.1.1175775772.5720.0';

let db: TestDatabase;
let work: string;
let storageDir: string;
let store: InstanceStore;

/** Stage bytes as a front end would: a temp file plus its size and SHA-256. */
function receive(bytes: Buffer): ReceivedFile {
  const p = path.join(work, `incoming-${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(p, bytes);
  return { path: p, sizeBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.join(d.parentPath, d.name));
}

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-store-'));
  storageDir = path.join(work, 'instances');
  store = new InstanceStore({ pool: db.pool, storageDir });
});
afterAll(async () => {
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

// [REQ-ING-01] Durable instance storage: ack only after fsync + rename + commit.
describe(`InstanceStore (${backendName()})`, () => {
  it('stores a new instance: file in place, row, study receiving, audit row', async () => {
    const bytes = readFileSync(FREN);
    const file = receive(bytes);
    const out = await store.accept(file, { via: 'stow-rs', remoteAddress: '10.1.2.3', actor: 'modality-1' });
    expect(out.status).toBe('stored');
    if (out.status === 'failed') return;
    expect(out.identity.sopInstanceUid).toBe(FREN_SOP);
    expect(out.storedPath).toBe(path.join(storageDir, FREN_STUDY, FREN_SERIES, `${FREN_SOP}.dcm`));
    expect(readFileSync(out.storedPath).equals(bytes)).toBe(true);
    expect(existsSync(file.path)).toBe(false);

    const study = await getStudy(db.pool, FREN_STUDY);
    expect(study).toMatchObject({ state: 'receiving', instanceCount: 1 });
    const instances = await new InstanceRepository(db.pool).listForStudy(FREN_STUDY);
    expect(instances).toEqual([
      expect.objectContaining({
        sopInstanceUid: FREN_SOP,
        seriesInstanceUid: FREN_SERIES,
        sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
        modality: 'OT',
        transferSyntaxUid: '1.2.840.10008.1.2.1',
        filePath: out.storedPath,
        fileSha256: file.sha256,
        sizeBytes: bytes.byteLength,
        receivedVia: 'stow-rs',
        // [issue 8] The header columns, read once at receipt.
        instanceNumber: 1,
        seriesNumber: 1,
        numberOfFrames: 1,
        rows: 32,
        columns: 32,
        photometricInterpretation: 'MONOCHROME2',
        specificCharacterSet: 'ISO_IR 100',
        hasPixelData: true,
      }),
    ]);
    const { rows } = await db.pool.query<{
      event_id: string;
      actor: string;
      source: string;
      detail: { sha256: string };
    }>(`SELECT event_id, actor, source, detail FROM audit_events WHERE kind = 'instance-received' AND outcome = 0`);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ event_id: '110104', actor: 'modality-1', source: '10.1.2.3' });
    expect(rows[0]?.detail.sha256).toBe(file.sha256);
  });

  it('an identical resend is a duplicate: one row, one file, temp file removed', async () => {
    const file = receive(readFileSync(FREN));
    const out = await store.accept(file, { via: 'c-store', actor: 'MODALITY' });
    expect(out.status).toBe('duplicate');
    expect(existsSync(file.path)).toBe(false);
    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM instances WHERE sop_instance_uid = $1',
      [FREN_SOP],
    );
    expect(rows[0]?.n).toBe(1);
    expect(filesUnder(storageDir)).toHaveLength(1);
    expect((await getStudy(db.pool, FREN_STUDY))?.instanceCount).toBe(1);
  });

  it('the same SOP Instance UID with different bytes is refused (0x0111) and the stored copy kept', async () => {
    const bytes = readFileSync(FREN);
    const before = createHash('sha256').update(bytes).digest('hex');
    bytes[bytes.length - 1] = (bytes[bytes.length - 1]! + 1) & 0xff; // last pixel byte
    const file = receive(bytes);
    const out = await store.accept(file, { via: 'stow-rs' });
    expect(out).toMatchObject({
      status: 'failed',
      failureReason: FailureReason.DuplicateSopInstance,
      sopInstanceUid: FREN_SOP,
    });
    expect(existsSync(file.path)).toBe(false);
    const stored = path.join(storageDir, FREN_STUDY, FREN_SERIES, `${FREN_SOP}.dcm`);
    expect(createHash('sha256').update(readFileSync(stored)).digest('hex')).toBe(before);
  });

  it('garbage is refused as Cannot Understand (0xC000, dicom-invalid) and nothing is stored', async () => {
    for (const bytes of [randomBytes(2048), Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), randomBytes(64)])]) {
      const file = receive(bytes);
      const out = await store.accept(file, { via: 'stow-rs' });
      expect(out).toMatchObject({
        status: 'failed',
        failureReason: FailureReason.CannotUnderstand,
        code: 'dicom-invalid',
      });
      expect(existsSync(file.path)).toBe(false);
    }
    expect(filesUnder(storageDir)).toHaveLength(1);
  });

  it('an instance of another study than the request URI names is refused (0xA900, study-mismatch)', async () => {
    const file = receive(readFileSync(GERM));
    const out = await store.accept(file, { via: 'stow-rs', expectedStudyInstanceUid: FREN_STUDY });
    expect(out).toMatchObject({
      status: 'failed',
      failureReason: FailureReason.DataSetDoesNotMatchSopClass,
      code: 'study-mismatch',
    });
    expect(existsSync(file.path)).toBe(false);
    expect(await getStudy(db.pool, '1.3.6.1.4.1.5962.1.2.0.1175775772.5723.0')).toBeNull();
  });

  it('concurrent identical receipts store once', async () => {
    const bytes = readFileSync(GERM);
    const outs = await Promise.all([0, 1, 2].map(() => store.accept(receive(bytes), { via: 'wado-rs' })));
    expect(outs.map((o) => o.status).sort()).toEqual(['duplicate', 'duplicate', 'stored']);
    expect(filesUnder(storageDir)).toHaveLength(2);
    expect(readdirSync(work).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refusals are audited with a failure outcome and the chain still verifies', async () => {
    const { rows } = await db.pool.query<{ kind: string; outcome: number; n: number }>(
      `SELECT kind, outcome, count(*)::int AS n FROM audit_events WHERE kind IN ('instance-received', 'instance-refused')
       GROUP BY kind, outcome ORDER BY kind, outcome`,
    );
    // stored: chrFren + chrGerm; refused (issue 9: kind instance-refused): conflict, 2 × garbage, mismatch.
    expect(rows).toEqual([
      { kind: 'instance-received', outcome: 0, n: 2 },
      { kind: 'instance-refused', outcome: 8, n: 4 },
    ]);
    const detail = await db.pool.query<{ detail: Record<string, unknown> }>(
      `SELECT detail FROM audit_events WHERE kind = 'instance-refused'`,
    );
    for (const r of detail.rows) expect(r.detail.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  // [issue 8] Header validation from a stream: the pixel data element against the file size.
  it('a truncated Pixel Data value, native or encapsulated, is refused (0xC000) and nothing stored', async () => {
    const rle = readFileSync(path.join(FIXTURES_DIR, 'dicom', 'SC_rgb_rle_16bit_2frame.dcm'));
    for (const bytes of [
      readFileSync(path.join(FIXTURES_DIR, 'dicom', 'derived_truncated_in_pixeldata_CT_small.dcm')),
      rle.subarray(0, rle.length - 100),
    ]) {
      const before = filesUnder(storageDir).length;
      const file = receive(bytes);
      const out = await store.accept(file, { via: 'stow-rs' });
      expect(out).toMatchObject({
        status: 'failed',
        failureReason: FailureReason.CannotUnderstand,
        code: 'dicom-invalid',
      });
      if (out.status === 'failed') expect(out.message).toMatch(/Pixel Data/);
      expect(existsSync(file.path)).toBe(false);
      expect(filesUnder(storageDir)).toHaveLength(before);
    }
  });

  it('stores the header of a multi-frame encapsulated image and of an SR without pixels', async () => {
    const rle = receive(readFileSync(path.join(FIXTURES_DIR, 'dicom', 'SC_rgb_rle_16bit_2frame.dcm')));
    const sr = receive(readFileSync(path.join(FIXTURES_DIR, 'dicom', 'sr_document.dcm')));
    const a = await store.accept(rle, { via: 'stow-rs' });
    const b = await store.accept(sr, { via: 'stow-rs' });
    if (a.status === 'failed' || b.status === 'failed') throw new Error('expected both stored');
    const repo = new InstanceRepository(db.pool);
    const [image] = await repo.listForStudy(a.identity.studyInstanceUid);
    expect(image).toMatchObject({
      transferSyntaxUid: '1.2.840.10008.1.2.5',
      numberOfFrames: 2,
      rows: 100,
      columns: 100,
      photometricInterpretation: 'RGB',
      hasPixelData: true,
    });
    const [report] = (await repo.listForStudy(b.identity.studyInstanceUid)).filter(
      (i) => i.sopInstanceUid === b.identity.sopInstanceUid,
    );
    expect(report).toMatchObject({
      modality: 'SR',
      seriesDescription: 'Measurement Reports',
      numberOfFrames: 1,
      rows: null,
      columns: null,
      hasPixelData: false,
    });
  });

  it('a header over the configured cap is refused (0xC000) without reading further', async () => {
    const small = new InstanceStore({ pool: db.pool, storageDir, maxHeaderBytes: 1024 });
    const file = receive(readFileSync(path.join(FIXTURES_DIR, 'dicom', 'CT_small.dcm')));
    const out = await small.accept(file, { via: 'stow-rs' });
    expect(out).toMatchObject({
      status: 'failed',
      failureReason: FailureReason.CannotUnderstand,
      code: 'dicom-invalid',
    });
    if (out.status === 'failed') expect(out.message).toMatch(/exceeds 1024 bytes/);
  });

  it('a database that is down yields out-of-resources (0xA700), not a throw', async () => {
    const dead = new pg.Pool({ host: '127.0.0.1', port: 1, user: 'x', database: 'x', connectionTimeoutMillis: 500 });
    try {
      const s = new InstanceStore({ pool: dead, storageDir });
      const copy = path.join(work, 'germ-copy.dcm');
      copyFileSync(GERM, copy);
      const file = receive(readFileSync(copy));
      const out = await s.accept(file, { via: 'stow-rs' });
      expect(out).toMatchObject({
        status: 'failed',
        failureReason: FailureReason.OutOfResources,
        code: 'database-unavailable',
      });
      expect(existsSync(file.path)).toBe(false);
    } finally {
      await dead.end();
    }
  });
});

// [REQ-ING-02] QIDO poller memory.
describe(`PgRemoteStudyTracker (${backendName()})`, () => {
  it('tracks seen → failed → retrieved per node, and seeing again never downgrades', async () => {
    const t = new PgRemoteStudyTracker(db.pool);
    expect(await t.isRetrieved('pacs-a', '1.2.9')).toBe(false);
    await t.markSeen('pacs-a', '1.2.9');
    expect((await t.get('pacs-a', '1.2.9'))?.state).toBe('seen');
    await t.markFailed('pacs-a', '1.2.9', 'pacs-unavailable', 'HTTP 503');
    expect(await t.get('pacs-a', '1.2.9')).toMatchObject({
      state: 'failed',
      attempts: 1,
      errorCode: 'pacs-unavailable',
    });
    await t.markRetrieved('pacs-a', '1.2.9');
    await t.markSeen('pacs-a', '1.2.9');
    expect(await t.get('pacs-a', '1.2.9')).toMatchObject({ state: 'retrieved', attempts: 2, errorCode: null });
    expect(await t.isRetrieved('pacs-a', '1.2.9')).toBe(true);
    expect(await t.isRetrieved('pacs-b', '1.2.9')).toBe(false);
  });
});
