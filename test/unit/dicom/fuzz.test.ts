import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, RadScribeError } from '../../../src/errors.js';
import { ImagePrepClient } from '../../../src/pipeline/image-prep-client.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';
import { mutate, prng } from '../../fuzz/mutate.js';

/**
 * Hostile input (issue 3): FUZZ_CASES seeded mutations of small fixtures through parse → decode →
 * render → tiles in the image-prep worker, with a per-file time limit and a memory cap, so a hang
 * or an out-of-memory is detected instead of stalling CI. Every outcome must be success or a typed
 * DICOM error; `internal` (an unclassified exception), a timeout, or a dead worker is a bug. A
 * failing input is written out for test/fixtures/fuzz-regressions/, whose files are replayed below.
 */

const FUZZ_CASES = Number(process.env.RADSCRIBE_FUZZ_CASES ?? 10_000);
const SEED = Number(process.env.RADSCRIBE_FUZZ_SEED ?? 20_240_611);
const SEEDS = [
  'SC_rgb_small_odd.dcm',
  'SC_rgb_small_odd_big_endian.dcm',
  'SC_rgb_rle.dcm',
  'CR_16x16_6154.dcm',
  'SC_rgb_dcmtk_eb_cy_n1.dcm',
  'SC_rgb_rle_16bit_2frame.dcm',
  'image_dfl.dcm',
  'SC_rgb_jpeg_gdcm.dcm',
  'JLSL_08_07_0_1F.dcm',
  'MR_small_jp2klossless.dcm',
  'MR_small_jpeg_ls_lossless.dcm',
  'generated_encapsulated_defined_bot_2_to_2.dcm',
].map((f) => readFileSync(path.join(FIXTURES_DIR, 'dicom', f)));
const REGRESSIONS = path.join(FIXTURES_DIR, 'fuzz-regressions');

/** Tiny tiler config: the tiles stage runs, but costs nothing. */
const TINY_MLLAMA = {
  image_processor_type: 'MllamaImageProcessor',
  do_convert_rgb: true,
  do_normalize: true,
  do_pad: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  max_image_tiles: 1,
  resample: 2,
  rescale_factor: 1 / 255,
  size: { height: 8, width: 8 },
};

/** Typed outcomes a hostile file may give. */
// dicom-hostile (issue 9): a mutated length or dimension caught by the DICOM limits before parsing.
const ACCEPTED: ReadonlySet<string> = new Set([
  ErrorCode.DicomInvalid,
  ErrorCode.DicomUnsupported,
  ErrorCode.DicomHostile,
]);

async function outcome(client: ImagePrepClient, file: string): Promise<string> {
  try {
    await client.prepare(file, 0, TINY_MLLAMA);
    return 'ok';
  } catch (err) {
    if (err instanceof RadScribeError && ACCEPTED.has(err.code)) return err.code;
    return `BUG ${err instanceof RadScribeError ? err.code : 'untyped'}: ${(err as Error).message}`;
  }
}

describe('fuzz: mutated files through parse + decode in the image-prep worker', () => {
  let dir: string;
  let client: ImagePrepClient;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-fuzz-'));
    // 256 MB cap: a fixture is a few KB, so anything that needs more is a length-field bomb.
    client = new ImagePrepClient({ frameTimeoutMs: 10_000, maxOldGenerationSizeMb: 256 });
  });
  afterAll(async () => {
    await client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`${FUZZ_CASES} mutated files: no crash, no hang, only typed errors`, async () => {
    const rnd = prng(SEED);
    const bugs: string[] = [];
    const counts = new Map<string, number>();
    for (let i = 0; i < FUZZ_CASES; i++) {
      const seed = SEEDS[i % SEEDS.length] as Buffer;
      const { data, kind } = mutate(seed, rnd);
      const file = path.join(dir, `case-${i}.dcm`);
      writeFileSync(file, data);
      const o = await outcome(client, file);
      counts.set(o.startsWith('BUG') ? 'bug' : o, (counts.get(o.startsWith('BUG') ? 'bug' : o) ?? 0) + 1);
      if (o.startsWith('BUG')) {
        bugs.push(`case ${i} (${kind}, kept at ${file}): ${o}`);
        if (bugs.length >= 20) break;
      } else rmSync(file);
    }
    // Most mutants must still be exercised past the parser, or the fuzzer tests nothing.
    expect(counts.get('ok') ?? 0).toBeGreaterThan(FUZZ_CASES / 10);
    expect(bugs).toEqual([]);
  });

  const regressions = (() => {
    try {
      return readdirSync(REGRESSIONS).filter((f) => f.endsWith('.dcm'));
    } catch {
      return [];
    }
  })();
  (regressions.length > 0 ? it.each(regressions) : it.skip.each(['none']))(
    'regression %s gives a typed error or decodes',
    async (f) => {
      expect(await outcome(client, path.join(REGRESSIONS, f))).not.toMatch(/^BUG/);
    },
  );
});
