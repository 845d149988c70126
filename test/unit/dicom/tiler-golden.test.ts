import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildMllamaInput, parseMllamaPreprocessorConfig } from '../../../src/dicom/tiles.js';
import {
  float32LeBytes,
  renderGoldenCase,
  sha256Hex,
  TILER_GOLDEN_CASES,
  TILER_GOLDEN_DIR,
  toRgb,
} from '../../../tools/tiler-golden.js';
import { corpusPath, readCorpusManifest } from './corpus-manifest.js';

/**
 * Issue 10, "preprocessing stays exact": the tiler's float32 pixel_values equal, bit for bit, what Hugging Face
 * MllamaImageProcessor produced from the same rendered 8-bit RGB image (test/fixtures/tiler-golden/README.md:
 * versions, how the references were made). Compared per tile by SHA-256 of the little-endian float32 bytes;
 * the generator measured max |Δ| = 0 on every case, so any difference is a regression, not noise.
 */

interface GoldenCase {
  name: string;
  file: string;
  frame: number;
  width: number;
  height: number;
  renderedRgbSha256: string;
  pixelValuesShape: number[];
  numTiles: number;
  aspectRatioIds: number[][];
  aspectRatioMask: number[][][];
  tileSha256: string[];
  tileSum: number[];
  maxAbsDiffAtGeneration?: number;
}
const reference = JSON.parse(readFileSync(path.join(TILER_GOLDEN_DIR, 'reference.json'), 'utf8')) as {
  versions: Record<string, string>;
  preprocessorConfig: unknown;
  cases: GoldenCase[];
};
const cfg = parseMllamaPreprocessorConfig(reference.preprocessorConfig);
const byName = new Map(reference.cases.map((c) => [c.name, c]));
const photometric = new Map(readCorpusManifest().map((r) => [r.file, r.photometric]));

describe(`Mllama tiler vs HF MllamaImageProcessor (transformers ${reference.versions.transformersCommit?.slice(0, 7)}, Pillow ${reference.versions.pillow})`, () => {
  it('the references cover 1, 2, 3 and 4 tiles, MONOCHROME1, MONOCHROME2 and colour, one reference per case', () => {
    expect(reference.cases.map((c) => c.name).sort()).toEqual(TILER_GOLDEN_CASES.map((c) => c.name).sort());
    expect(new Set(reference.cases.map((c) => c.numTiles))).toEqual(new Set([1, 2, 3, 4]));
    const kinds = new Set(TILER_GOLDEN_CASES.map((c) => photometric.get(c.file)));
    for (const k of ['MONOCHROME1', 'MONOCHROME2', 'RGB']) expect(kinds).toContain(k);
    expect(kinds).toContain('YBR_ICT');
    for (const c of reference.cases) expect(c.maxAbsDiffAtGeneration).toBe(0);
  });

  it.each(TILER_GOLDEN_CASES.map((c) => [c.name, c] as const))('%s: bit-identical pixel_values', async (name, c) => {
    const ref = byName.get(name);
    if (!ref) throw new Error(`no reference for ${name}`);
    expect(readFileSync(corpusPath(c.file)).length).toBeGreaterThan(0);
    const img = await renderGoldenCase(c);
    // The rendering is ours and outside this test: if it changed, regenerate the references (README.md).
    expect({ name, rendered: sha256Hex(toRgb(img)) }).toEqual({ name, rendered: ref.renderedRgbSha256 });
    expect([img.width, img.height]).toEqual([ref.width, ref.height]);

    const out = buildMllamaInput(img, cfg);
    expect(out.dims).toEqual(ref.pixelValuesShape);
    expect(out.aspectRatioId).toBe(ref.aspectRatioIds[0]?.[0]);
    expect(out.aspectRatioMask).toEqual(ref.aspectRatioMask[0]?.[0]);
    expect(out.tiles[0] * out.tiles[1]).toBe(ref.numTiles);
    const per = out.pixelValues.length / cfg.maxImageTiles;
    const tiles = Array.from({ length: cfg.maxImageTiles }, (_, t) => out.pixelValues.subarray(t * per, (t + 1) * per));
    // Sums first: on a mismatch they say which tile and roughly how far off, where a hash cannot.
    const sums = tiles.map((t) => t.reduce((a, v) => a + v, 0));
    sums.forEach((s, t) => {
      expect([t, s]).toEqual([t, expect.closeTo(ref.tileSum[t] ?? Number.NaN, 2)]);
    });
    expect(tiles.map((t) => sha256Hex(float32LeBytes(t)))).toEqual(ref.tileSha256);

    // HF is fed RGB; grey images take the tiler's one-channel path, which must give the same tensor.
    if (img.channels === 1) {
      const rgb = buildMllamaInput({ ...img, channels: 3, data: toRgb(img) }, cfg);
      expect(sha256Hex(float32LeBytes(rgb.pixelValues))).toBe(sha256Hex(float32LeBytes(out.pixelValues)));
    }
  });
});
