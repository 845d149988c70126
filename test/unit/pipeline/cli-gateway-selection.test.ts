import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileCandidates, selectFileFrames } from '../../../src/cli/describe.js';
import { InstanceRepository } from '../../../src/ingest/instance-repository.js';
import { InstanceStore } from '../../../src/ingest/instance-store.js';
import { type SelectionPolicy, selectFrames } from '../../../src/pipeline/frame-selection.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';
import { type TestDatabase, testDatabase } from '../../support/db.js';
import { ctSlice, received } from './ct-series.js';

/**
 * [issue 8] `radscribe describe <files>` and the gateway share one candidate-selection code: for the
 * same files, the frames chosen from the CLI's headers equal those chosen from the rows ingest stored.
 */
jest.setTimeout(60_000);

const DICOM = path.join(FIXTURES_DIR, 'dicom');
const POLICY: SelectionPolicy = { eachImage: ['CR', 'OT', 'SC', 'US'], perSeriesSlices: 1, multiFrameFrames: 2 };

let db: TestDatabase;
let work: string;
let files: string[];
let ctSops: string[];

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-same-frames-'));
  // A four-slice CT series (Instance Numbers 1..4, UIDs in the reverse order), a CR, an MR, a
  // two-frame and a single-frame OT image, an NM, a US, an eight-frame SEG and an SR without pixel data.
  ctSops = [];
  files = [];
  for (const n of [2, 4, 1, 3]) {
    const slice = ctSlice(n, '2.25.82001');
    const f = path.join(work, `ct-${n}.dcm`);
    writeFileSync(f, slice.bytes);
    files.push(f);
    ctSops[n] = slice.sopInstanceUid;
  }
  for (const name of [
    'CR_16x16_6154.dcm',
    'MR_small.dcm',
    'SC_rgb_rle_16bit_2frame.dcm',
    'SC_ybr_full_uncompressed.dcm',
    'JPEG-LL.dcm',
    'OBXXXX1A_rle.dcm',
    'seg_image_ct_binary_overlap.dcm',
    'sr_document.dcm',
  ]) {
    const f = path.join(work, name);
    copyFileSync(path.join(DICOM, name), f);
    files.push(f);
  }
});
afterAll(async () => {
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

const key = (sop: string, frameIndex: number) => `${sop}#${frameIndex + 1}`;

describe('CLI and gateway frame selection', () => {
  it('choose the same frames for the same files', async () => {
    // CLI: one header read per file, the CLI's own selection entry point.
    const { candidates, failures } = await fileCandidates(files);
    expect(failures).toEqual([]);
    const cli = selectFileFrames(candidates, POLICY).map((s) => key(s.candidate.sopInstanceUid, s.frameIndex));

    // Gateway: the files received and stored, then selection from each study's rows.
    const store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
    const studies = new Set<string>();
    for (const f of files) {
      const out = await store.accept(received(work, readFileSync(f)), { via: 'stow-rs', actor: 'test' });
      if (out.status === 'failed') throw new Error(`${path.basename(f)}: ${out.message}`);
      studies.add(out.identity.studyInstanceUid);
    }
    const repo = new InstanceRepository(db.pool);
    const gateway: string[] = [];
    for (const study of studies) {
      const rows = await repo.listForStudy(study);
      for (const s of selectFrames(rows, POLICY)) gateway.push(key(s.candidate.sopInstanceUid, s.frameIndex));
    }

    expect([...gateway].sort()).toEqual([...cli].sort());
    // And the choice is the one the policy means: the middle CT slice by Instance Number (3), both
    // frames of the two-frame image, nothing from the SR.
    expect(cli).toContain(key(ctSops[3] as string, 0));
    expect(cli.filter((k) => ctSops.includes(k.split('#')[0] as string))).toHaveLength(1);
    const twoFrame = candidates.find((c) => c.filePath.endsWith('SC_rgb_rle_16bit_2frame.dcm'));
    expect(cli.filter((k) => k.startsWith(`${twoFrame?.sopInstanceUid}#`))).toHaveLength(2);
    const sr = candidates.find((c) => c.filePath.endsWith('sr_document.dcm'));
    expect(sr?.hasPixelData).toBe(false);
    expect(cli.some((k) => k.startsWith(`${sr?.sopInstanceUid}#`))).toBe(false);
    // CT 1, CR 1, MR 1, two-frame OT 2, OT 1, NM 1, US 1, SEG 1 (the middle of its eight frames).
    expect(cli).toHaveLength(9);
  });
});
