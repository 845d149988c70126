/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type GenerateOptions, generateBatch } from '../../../src/inference/generate.js';
import type { ImageInput } from '../../../src/inference/image-input.js';
import { loadModelBundle } from '../../../src/inference/model-bundle.js';
import { createVisionLanguageModel } from '../../../src/inference/model-factory.js';
import { ChatTokenizer } from '../../../src/inference/tokenizer.js';
import type { VisionLanguageModel } from '../../../src/inference/vision-language-model.js';
import { generateFixtureBundle } from '../../../tools/make-fixture-model.js';
import { makeImage, makePlainImage, pattern, TINY_MERGE_DIR, TINY_MLLAMA_DIR } from './helpers.js';

/**
 * The generation contract of issue 4, for BOTH families behind VisionLanguageModel, on the committed fp32
 * fixtures and on fp16-I/O variants generated here (float16 KV cache, embeddings, logits).
 */

const tmp = mkdtempSync(path.join(tmpdir(), 'f16-fixtures-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Case {
  label: string;
  dir: () => string;
  images: () => ImageInput[];
}

/** Built once per family: in-process generation copies pixels and never detaches them. */
function once<T>(f: () => T): () => T {
  let v: T | undefined;
  return () => {
    v ??= f();
    return v;
  };
}

const mllamaImages = once(() => [
  makeImage(pattern(2), 6, [1, 1, 1, 1]),
  makeImage(() => 0),
  makeImage((t, i) => Math.cos(i * 0.05 + t), 2, [1, 1, 0, 0]),
]);
const mergeImages = once(() => [
  makePlainImage((i) => Math.sin(i * 0.003 + 1)),
  makePlainImage((i) => Math.sin(i * 0.003 + 2)),
  makePlainImage((i) => Math.cos(i * 0.01)),
]);

const CASES: Case[] = [
  { label: 'mllama fp32', dir: () => TINY_MLLAMA_DIR, images: mllamaImages },
  { label: 'embedding-merge fp32', dir: () => TINY_MERGE_DIR, images: mergeImages },
  {
    label: 'mllama fp16 I/O',
    dir: () => {
      const d = path.join(tmp, 'mllama16');
      generateFixtureBundle(d, { family: 'mllama', floatIo: 'float16' });
      return d;
    },
    images: mllamaImages,
  },
  {
    label: 'embedding-merge fp16 I/O',
    dir: () => {
      const d = path.join(tmp, 'merge16');
      generateFixtureBundle(d, { family: 'embedding-merge', floatIo: 'float16' });
      return d;
    },
    images: mergeImages,
  },
];

const maxAbsDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);

describe.each(CASES)('generation contract: $label', ({ label, dir, images }) => {
  let model: VisionLanguageModel;
  let promptIds: number[];
  let eos: number[];
  const fp16 = label.includes('fp16');

  beforeAll(async () => {
    const bundle = await loadModelBundle(dir());
    model = await createVisionLanguageModel(bundle, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    const tok = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
      chatTemplate: bundle.manifest.chatTemplate,
    });
    promptIds = tok.encodePrompt(bundle.manifest.prompt, bundle.manifest.imagePosition);
    eos = bundle.manifest.specialTokens.eos;
  });
  afterAll(async () => {
    await model.dispose();
    await model.dispose();
  });

  const run = (imgs: ImageInput[], opts: Partial<GenerateOptions> = {}) =>
    generateBatch(model, promptIds, imgs, { maxNewTokens: 12, stopTokenIds: eos, ...opts });

  it('discovers the KV dtype the graph declares and a dynamic batch', () => {
    expect(model.kv.dtype).toBe(fp16 ? 'float16' : 'float32');
    expect(model.dynamicBatch).toBe(true);
  });

  it('KV-cache decoding gives the same tokens and logits as recomputing the whole sequence', async () => {
    const img = images()[0] as ImageInput;
    const cached: Float32Array[] = [];
    const full: Float32Array[] = [];
    const [a] = await run([img], { maxNewTokens: 16, stopTokenIds: [], onLogits: (_, l) => cached.push(l) });
    const [b] = await run([img], {
      maxNewTokens: 16,
      stopTokenIds: [],
      useCache: false,
      onLogits: (_, l) => full.push(l),
    });
    expect(a?.tokenIds).toHaveLength(16);
    expect(b?.tokenIds).toEqual(a?.tokenIds);
    // fp16 I/O rounds the cache and logits to half precision; recompute rounds at different points.
    cached.forEach((l, i) => {
      expect(maxAbsDiff(l, full[i] as Float32Array)).toBeLessThan(fp16 ? 2e-2 : 1e-4);
    });
  });

  it('greedy is deterministic and the output is non-degenerate', async () => {
    const [a] = await run([images()[1] as ImageInput]);
    const [b] = await run([images()[1] as ImageInput]);
    expect(b?.tokenIds).toEqual(a?.tokenIds);
    expect(a?.tokenIds.length).toBeGreaterThan(0);
  });

  it('honours max_new_tokens and stop tokens', async () => {
    for (const n of [1, 5]) {
      const [r] = await run([images()[0] as ImageInput], { maxNewTokens: n, stopTokenIds: [] });
      expect(r?.tokenIds).toHaveLength(n);
      expect(r?.stopReason).toBe('max-new-tokens');
    }
    const [free] = await run([images()[2] as ImageInput], { stopTokenIds: [] });
    const stopId = free?.tokenIds[3] as number;
    const firstAt = free?.tokenIds.indexOf(stopId) as number;
    const [r] = await run([images()[2] as ImageInput], { stopTokenIds: [stopId] });
    expect(r?.stopReason).toBe('stop-token');
    expect(r?.tokenIds).toEqual(free?.tokenIds.slice(0, firstAt + 1));
  });

  it('several images decoded as one batch give exactly what each gives alone', async () => {
    const seq = [];
    for (const img of images()) seq.push(...(await run([img], { maxNewTokens: 10, stopTokenIds: [] })));
    const batched = await run(images(), { maxNewTokens: 10, stopTokenIds: [] });
    expect(batched.map((r) => r.tokenIds)).toEqual(seq.map((r) => r.tokenIds));
    // Per-row stopping inside a batch: a stop token that ends row 0 early leaves the others untouched.
    const stopId = seq[0]?.tokenIds[2] as number;
    const withStop = await run(images(), { maxNewTokens: 10, stopTokenIds: [stopId] });
    const alone = [];
    for (const img of images()) alone.push(...(await run([img], { maxNewTokens: 10, stopTokenIds: [stopId] })));
    expect(withStop.map((r) => [r.tokenIds, r.stopReason])).toEqual(alone.map((r) => [r.tokenIds, r.stopReason]));
  });

  it('seeded sampling is reproducible, batched or not; no-repeat-ngram forbids a repeated n-gram', async () => {
    const sampling = { doSample: true, temperature: 1.5, topK: 20, topP: 0.95, seed: 123 };
    const [a] = await run([images()[0] as ImageInput], { sampling, stopTokenIds: [] });
    const [b] = await run([images()[0] as ImageInput], { sampling, stopTokenIds: [] });
    expect(b?.tokenIds).toEqual(a?.tokenIds);
    const batched = await run(images(), { sampling, stopTokenIds: [] });
    expect(batched[0]?.tokenIds).toEqual(a?.tokenIds);
    const [nr] = await run([images()[0] as ImageInput], {
      maxNewTokens: 24,
      stopTokenIds: [],
      sampling: { doSample: false, noRepeatNgramSize: 2 },
    });
    const grams = new Set<string>();
    const toks = nr?.tokenIds ?? [];
    for (let i = 0; i + 2 <= toks.length; i++) {
      const g = `${toks[i]},${toks[i + 1]}`;
      expect(grams.has(g)).toBe(false);
      grams.add(g);
    }
  });

  it('cancellation and the time limit stop generation mid-run', async () => {
    const ac = new AbortController();
    const results = await run(images(), {
      stopTokenIds: [],
      signal: ac.signal,
      onLogits: (step) => (step === 2 ? ac.abort() : undefined),
    });
    for (const r of results) {
      expect(r.stopReason).toBe('aborted');
      expect(r.tokenIds).toHaveLength(3);
    }
    const [late] = await run([images()[0] as ImageInput], { deadlineMs: Date.now() - 1 });
    expect(late?.stopReason).toBe('timeout');
  });
});

describe('families behind one interface', () => {
  it('the embedding-merge model expands the image token and rejects a tiled Mllama input', async () => {
    const bundle = await loadModelBundle(TINY_MERGE_DIR);
    const model = await createVisionLanguageModel(bundle, { executionProviders: ['cpu'] });
    try {
      expect(model.family).toBe('embedding-merge');
      const img = bundle.manifest.specialTokens.image;
      expect(model.expandPrompt([1, img, 2]).filter((t) => t === img)).toHaveLength(
        bundle.manifest.imageTokensPerImage as number,
      );
      expect(() => model.validateImage(makeImage(() => 0))).toThrow(/dims must be/);
    } finally {
      await model.dispose();
    }
  });
});
