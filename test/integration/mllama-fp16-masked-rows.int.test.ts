/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generate } from '../../src/inference/generate.js';
import { MllamaModel } from '../../src/inference/mllama-model.js';
import { loadModelBundle, type ModelBundle } from '../../src/inference/model-bundle.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { generateFixtureBundle } from '../../tools/make-fixture-model.js';
import { makeImage, pattern } from '../unit/inference/helpers.js';
import { prefillLogits } from '../unit/inference/prefill.js';

/**
 * Fully masked cross-attention rows in fp16 (model-contract §5.7, transformers #39379): text before <|image|>
 * sees no tile, so HF gives it a zero additive mask (uniform attention over every tile) and zeroes its MLP
 * branch. In fp16 an additive finfo.min mask can overflow to -inf and a fully masked row then becomes
 * -inf - -inf = NaN. The real-architecture fp16 fixture (graph-converted by tools/export, fp16 compute) must give
 * finite logits on every prompt row, not only the last one generate() reads, and on every decode step after.
 */
const DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real-fp16');

describe('tiny-mllama-real-fp16: rows before <|image|> give no NaN', () => {
  let bundle: ModelBundle;
  let model: MllamaModel;

  beforeAll(async () => {
    bundle = await loadModelBundle(DIR);
    model = await MllamaModel.create(bundle, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await model.dispose();
  });

  /** bos, `before` text ids, <|image|>, 4 text ids; text ids are plain (non-special) tokens of the vocabulary. */
  const prompt = (before: number) => {
    const { bos, image } = bundle.manifest.specialTokens;
    const text = Array.from({ length: before + 4 }, (_, i) => 10 + (i % 40));
    return [bos, ...text.slice(0, before), image, ...text.slice(before)];
  };

  it('is an fp16 graph (the test would prove nothing on fp32 compute)', () => {
    const decoderInputs = bundle.manifest.onnx.decoder.inputs;
    expect(decoderInputs.find((i) => i.name === 'inputs_embeds')?.dtype).toBe('float16');
    expect(decoderInputs.find((i) => i.name === 'cross_attention_states')?.dtype).toBe('float16');
  });

  it.each([
    ['1 tile', 1, [1, 0, 0, 0]],
    ['2 tiles', 2, [1, 1, 0, 0]],
    ['4 tiles', 6, [1, 1, 1, 1]],
  ] as const)('%s: every prefill row finite, the fully masked ones included', async (_name, arId, arMask) => {
    const ids = prompt(12);
    const rows = await prefillLogits(model, ids, makeImage(pattern(arId), arId, [...arMask]));
    expect(rows).toHaveLength(ids.length);
    const masked = ids.indexOf(bundle.manifest.specialTokens.image);
    expect(masked).toBe(13);
    rows.forEach((row, s) => {
      expect([s, row.length, row.every(Number.isFinite)]).toEqual([s, row.length, true]);
    });
    // Not degenerate: the masked rows are real logits, not a constant.
    const first = rows[1] as Float32Array;
    // A loop, not Math.max(...row): the real vocabulary's 128256-wide row overflows the call stack.
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const v of first) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect(hi - lo).toBeGreaterThan(1e-3);
  });

  it('generation after a text-first prompt stays finite for 16 steps', async () => {
    const steps: Float32Array[] = [];
    const r = await generate(model, prompt(20), makeImage(pattern(9), 2, [1, 1, 0, 0]), {
      maxNewTokens: 16,
      stopTokenIds: [],
      onLogits: (s, l) => (steps[s] = l),
    });
    expect(r.tokenIds).toHaveLength(16);
    expect(steps.map((l, s) => [s, l.every(Number.isFinite)])).toEqual(steps.map((_, s) => [s, true]));
  });
});

/**
 * The hand-built stand-in with fp16 I/O (float16 embeddings, cross states, KV and logits; its compute stays
 * float32 inside, so this checks the HF masking's fp16 boundary, not fp16 arithmetic): text-first prompt, every
 * prefill row finite.
 */
describe('tiny-mllama (hand-built, HF masking) fp16 I/O: rows before <|image|> give no NaN', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'tiny-mllama-f16-'));
  let bundle: ModelBundle;
  let model: MllamaModel;

  beforeAll(async () => {
    generateFixtureBundle(tmp, { family: 'mllama', floatIo: 'float16' });
    bundle = await loadModelBundle(tmp);
    model = await MllamaModel.create(bundle, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await model.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('every prefill row finite with 8 text rows before the image', async () => {
    const { bos, image } = bundle.manifest.specialTokens;
    const ids = [bos, 20, 21, 22, 23, 24, 25, 26, image, 27, 28];
    const rows = await prefillLogits(model, ids, makeImage(pattern(3), 2, [1, 1, 0, 0]));
    expect(rows.map((r, s) => [s, r.every(Number.isFinite)])).toEqual(rows.map((_, s) => [s, true]));
  });
});
