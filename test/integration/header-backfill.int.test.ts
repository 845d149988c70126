import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { InstanceIdentity } from '../../src/dicom/dataset.js';
import { backfillInstanceHeaders } from '../../src/ingest/header-backfill.js';
import { InstanceRepository } from '../../src/ingest/instance-repository.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import type { ReceivedFile } from '../../src/ingest/types.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(60_000);

let db: TestDatabase;
let work: string;
let store: InstanceStore;

function receive(bytes: Buffer): ReceivedFile {
  const p = path.join(work, `incoming-${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(p, bytes);
  return { path: p, sizeBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** Make a row look as migration 0004 left a row stored before it: header columns empty, unread. */
async function asIfStoredBefore0004(sopInstanceUid: string): Promise<void> {
  await db.pool.query(
    `UPDATE instances SET header_read = false, instance_number = NULL, series_number = NULL, number_of_frames = 1,
       pixel_rows = NULL, pixel_columns = NULL, photometric_interpretation = NULL, body_part_examined = NULL,
       series_description = NULL, specific_character_set = NULL, has_pixel_data = false
     WHERE sop_instance_uid = $1`,
    [sopInstanceUid],
  );
}

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-backfill-'));
  store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
});
afterAll(async () => {
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

// [REQ-ING-03] Rows stored before migration 0004 get their header columns from their files, once.
describe(`instance header backfill (${backendName()})`, () => {
  it('refills the header columns a pre-0004 row lacks, equal to what ingest stored', async () => {
    const files = ['CT_small.dcm', 'MR_small_RLE.dcm', 'SC_rgb_rle_16bit_2frame.dcm'];
    const stored: InstanceIdentity[] = [];
    for (const f of files) {
      const out = await store.accept(receive(readFileSync(path.join(FIXTURES_DIR, 'dicom', f))), { via: 'import' });
      if (out.status === 'failed') throw new Error(`${f}: ${out.message}`);
      stored.push(out.identity);
    }
    const repo = new InstanceRepository(db.pool);
    const before = new Map<string, unknown>();
    for (const id of stored)
      for (const row of await repo.listForStudy(id.studyInstanceUid))
        if (row.sopInstanceUid === id.sopInstanceUid) before.set(id.sopInstanceUid, row);
    expect(before.size).toBe(files.length);
    for (const id of stored) await asIfStoredBefore0004(id.sopInstanceUid);
    const emptied = (await repo.listForStudy(stored[2]!.studyInstanceUid)).find(
      (r) => r.sopInstanceUid === stored[2]!.sopInstanceUid,
    );
    expect(emptied?.hasPixelData).toBe(false);

    const result = await backfillInstanceHeaders(db.pool, { batchSize: 2 });
    expect(result).toEqual({ filled: files.length, unreadable: 0 });
    for (const id of stored) {
      const row = (await repo.listForStudy(id.studyInstanceUid)).find((r) => r.sopInstanceUid === id.sopInstanceUid);
      expect(row).toEqual(before.get(id.sopInstanceUid));
    }
    const multi = before.get(stored[2]!.sopInstanceUid) as { numberOfFrames: number; hasPixelData: boolean };
    expect(multi.numberOfFrames).toBe(2);
    expect(multi.hasPixelData).toBe(true);
    // A second start finds nothing left to do.
    expect(await backfillInstanceHeaders(db.pool)).toEqual({ filled: 0, unreadable: 0 });
  });

  it('marks a row whose file is gone as read, without pixel data, and does not retry it', async () => {
    const out = await store.accept(receive(readFileSync(path.join(FIXTURES_DIR, 'dicom', 'chrFren.dcm'))), {
      via: 'import',
    });
    if (out.status === 'failed') throw new Error(out.message);
    await asIfStoredBefore0004(out.identity.sopInstanceUid);
    unlinkSync(out.storedPath);
    expect(await backfillInstanceHeaders(db.pool)).toEqual({ filled: 0, unreadable: 1 });
    const { rows } = await db.pool.query(
      'SELECT header_read, has_pixel_data FROM instances WHERE sop_instance_uid = $1',
      [out.identity.sopInstanceUid],
    );
    expect(rows[0]).toEqual({ header_read: true, has_pixel_data: false });
    expect(await backfillInstanceHeaders(db.pool)).toEqual({ filled: 0, unreadable: 0 });
  });
});
