/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { generate } from '../../src/inference/generate.js';
import { MllamaModel } from '../../src/inference/mllama-model.js';
import { loadModelBundle, type ModelBundle } from '../../src/inference/model-bundle.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';

/**
 * Issue 10: the Node runtime on the real-architecture fixture (exported from HF MllamaForConditionalGeneration
 * by tools/export/export_mllama.py) against PyTorch generate(do_sample=False) on the same pixel tensors.
 * The references' tokens are the argmax of RAW logits (min_new_tokens kept EOS out of the first steps), so the
 * runtime is run with no stop tokens for exactly as many steps.
 */
const DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real');
const REF_DIR = path.join(DIR, 'reference');

interface ReferenceCase {
  name: string;
  numTiles: number;
  pixelValuesShape: number[];
  pixelValuesFile: string;
  aspectRatioIds: number[][];
  aspectRatioMask: number[][][];
  promptIds: number[];
  tokens: number[];
  logits: number[][];
}
const reference = JSON.parse(readFileSync(path.join(REF_DIR, 'reference.json'), 'utf8')) as {
  versions: Record<string, string>;
  cases: ReferenceCase[];
};

function pixels(c: ReferenceCase): Float32Array {
  const buf = gunzipSync(readFileSync(path.join(REF_DIR, c.pixelValuesFile)));
  const out = new Float32Array(buf.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

describe(`tiny-mllama-real vs PyTorch (transformers ${reference.versions.transformers}, torch ${reference.versions.torch})`, () => {
  let bundle: ModelBundle;
  let model: MllamaModel;

  beforeAll(async () => {
    bundle = await loadModelBundle(DIR);
    model = await MllamaModel.create(bundle, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('covers 1, 2, 3 and 4 tiles and both image positions', () => {
    expect(new Set(reference.cases.map((c) => c.numTiles))).toEqual(new Set([1, 2, 3, 4]));
    for (const c of reference.cases) expect(c.tokens.length).toBeGreaterThanOrEqual(32);
  });

  it.each(reference.cases.map((c) => [c.name, c] as const))(
    '%s: same greedy tokens, max |Δ logit| <= 1e-4',
    async (_name, c) => {
      const steps: Float32Array[] = [];
      const r = await generate(
        model,
        c.promptIds,
        {
          pixelValues: pixels(c),
          dims: c.pixelValuesShape,
          aspectRatioId: c.aspectRatioIds[0]?.[0] ?? 0,
          aspectRatioMask: c.aspectRatioMask[0]?.[0] ?? [],
        },
        { maxNewTokens: c.tokens.length, stopTokenIds: [], onLogits: (s, l) => (steps[s] = l) },
      );
      let maxDiff = 0;
      c.logits.forEach((row, s) => {
        const got = steps[s];
        if (!got) throw new Error(`no logits for step ${s}`);
        row.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - (got[i] as number)))));
      });
      // eslint-disable-next-line no-console
      console.log(`${c.name}: tokens ${JSON.stringify(r.tokenIds) === JSON.stringify(c.tokens) ? 'EQUAL' : 'DIFFER'}, max |Δ logit| ${maxDiff.toExponential(2)}`);
      expect(r.tokenIds).toEqual(c.tokens);
      expect(maxDiff).toBeLessThanOrEqual(1e-4);
    },
  );
});
