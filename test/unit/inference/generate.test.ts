/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { ErrorCode, RadScribeError } from '../../../src/errors.js';
import { type GenerateOptions, generate } from '../../../src/inference/generate.js';
import type { ImageInput } from '../../../src/inference/image-input.js';
import { MllamaModel } from '../../../src/inference/mllama-model.js';
import { loadModelBundle, type ModelBundle } from '../../../src/inference/model-bundle.js';
import { ChatTokenizer } from '../../../src/inference/tokenizer.js';
import { makeImage, pattern, TINY_MLLAMA_DIR } from './helpers.js';
import { prefillLogits } from './prefill.js';

/** The real generation loop on the tiny fixture with onnxruntime-node CPU, in-process. */
describe('generate (tiny Mllama fixture, CPU EP)', () => {
  let bundle: ModelBundle;
  let model: MllamaModel;
  let promptIds: number[];
  let eos: number[];

  beforeAll(async () => {
    bundle = await loadModelBundle(TINY_MLLAMA_DIR);
    model = await MllamaModel.create(bundle, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    const tok = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
    });
    promptIds = tok.encodePrompt(bundle.manifest.prompt, bundle.manifest.imagePosition);
    eos = bundle.manifest.specialTokens.eos;
  });
  afterAll(async () => {
    await model.dispose();
    await model.dispose();
  });

  const run = (img: ImageInput, opts: Partial<GenerateOptions> = {}) =>
    generate(model, promptIds, img, { maxNewTokens: 12, stopTokenIds: eos, ...opts });

  async function firstLogits(img: ImageInput): Promise<Float32Array> {
    let first: Float32Array | undefined;
    await run(img, {
      maxNewTokens: 1,
      onLogits: (s, l) => {
        if (s === 0) first = l;
      },
    });
    if (!first) throw new Error('no logits');
    return first;
  }

  const maxAbsDiff = (a: Float32Array, b: Float32Array) =>
    a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);

  it('reports the provider it loaded on and discovers the self-attention cache inputs', () => {
    expect(model.provider).toBe('cpu');
    expect(model.pastNames.length).toBeGreaterThanOrEqual(4);
    for (const n of model.pastNames) expect(n).toMatch(/^past_key_values\.\d+\.(key|value)$/);
    // Layer 1 is the cross-attention layer in the fixture: it has no self KV cache.
    expect(
      model.pastNames.some((n) => n.startsWith(`past_key_values.${bundle.manifest.crossAttentionLayers[0]}.`)),
    ).toBe(false);
  });

  it('greedy generation is deterministic, finite, and times each phase', async () => {
    const a = await run(makeImage(pattern(1)));
    const b = await run(makeImage(pattern(1)));
    expect(a.tokenIds).toEqual(b.tokenIds);
    expect(a.tokenIds.length).toBeGreaterThan(0);
    expect(a.timings.visionEncoderMs).toBeGreaterThan(0);
    expect(a.timings.prefillMs).toBeGreaterThan(0);
    expect(a.timings.decodeMs).toHaveLength(a.tokenIds.length - 1);
    const l = await firstLogits(makeImage(pattern(1)));
    expect(l).toHaveLength(
      bundle.config.text_config ? (bundle.config.text_config as { vocab_size: number }).vocab_size : 0,
    );
    expect(l.every(Number.isFinite)).toBe(true);
    // Non-degenerate: the logits are spread out, not all ~equal.
    expect(Math.max(...l) - Math.min(...l)).toBeGreaterThan(1);
  });

  it('decoding with the KV cache gives the same tokens and logits (1e-4) as recomputing the whole sequence', async () => {
    const img = makeImage(pattern(2), 6, [1, 1, 1, 1]);
    const cached: Float32Array[] = [];
    const full: Float32Array[] = [];
    const a = await run(img, { maxNewTokens: 16, stopTokenIds: [], onLogits: (_, l) => cached.push(l) });
    const b = await run(img, { maxNewTokens: 16, stopTokenIds: [], useCache: false, onLogits: (_, l) => full.push(l) });
    expect(a.tokenIds).toHaveLength(16);
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(full).toHaveLength(cached.length);
    cached.forEach((l, i) => {
      expect(maxAbsDiff(l, full[i] as Float32Array)).toBeLessThan(1e-4);
    });
  });

  it('honours maxNewTokens', async () => {
    for (const n of [1, 5]) {
      const r = await run(makeImage(pattern(3)), { maxNewTokens: n, stopTokenIds: [] });
      expect(r.tokenIds).toHaveLength(n);
      expect(r.stopReason).toBe('max-new-tokens');
    }
    const zero = await run(makeImage(pattern(3)), { maxNewTokens: 0 });
    expect(zero.tokenIds).toEqual([]);
  });

  it('a stop token ends generation right after it is produced', async () => {
    const free = await run(makeImage(pattern(4)), { maxNewTokens: 12, stopTokenIds: [] });
    const k = Math.min(3, free.tokenIds.length - 1);
    const stopId = free.tokenIds[k] as number;
    const firstAt = free.tokenIds.indexOf(stopId);
    const r = await run(makeImage(pattern(4)), { maxNewTokens: 12, stopTokenIds: [stopId] });
    expect(r.stopReason).toBe('stop-token');
    expect(r.tokenIds).toEqual(free.tokenIds.slice(0, firstAt + 1));
  });

  it('the image matters: zeros vs ones give different logits', async () => {
    const zeros = await firstLogits(makeImage(() => 0));
    const ones = await firstLogits(makeImage(() => 1));
    expect(maxAbsDiff(zeros, ones)).toBeGreaterThan(1e-3);
  });

  // Aspect ratio id 2 = (1,2): two real tiles, slots 2 and 3 are padding.
  const twoTiles = (real: (t: number, i: number) => number, pad: (i: number) => number) =>
    makeImage((t, i) => (t < 2 ? real(t, i) : pad(i)), 2, [1, 1, 0, 0]);
  const realA = (t: number, i: number) => Math.sin(i * 0.01 + t);

  it('the vision encoder ignores padded tiles: real-tile states do not depend on them; real tiles do', async () => {
    const statesOf = async (img: ImageInput) => {
      const enc = await model.encodeImages([img]);
      const per = (enc.states.dims[1] ?? 0) * (enc.states.dims[2] ?? 0);
      const real = (enc.states.data as Float32Array).slice(0, 2 * per);
      enc.dispose();
      return real;
    };
    const base = await statesOf(twoTiles(realA, () => 0));
    expect(maxAbsDiff(base, await statesOf(twoTiles(realA, (i) => Math.cos(i * 0.7))))).toBe(0);
    expect(
      maxAbsDiff(
        base,
        await statesOf(
          twoTiles(
            (t, i) => Math.sin(i * 0.01 + t * 2),
            () => 0,
          ),
        ),
      ),
    ).toBeGreaterThan(1e-4);
  });

  describe('cross-attention masking follows Hugging Face (transformers #39379), not Meta', () => {
    const image = () => bundle.manifest.specialTokens.image;
    const bos = () => bundle.manifest.specialTokens.bos;

    it('rows at and after <|image|> see the real tiles only: padded tiles change no logit of an image-first prompt', async () => {
      const ids = [image(), 20, 21, 22, 23];
      const base = await prefillLogits(
        model,
        ids,
        twoTiles(realA, () => 0),
      );
      const noisy = await prefillLogits(
        model,
        ids,
        twoTiles(realA, (i) => Math.cos(i * 0.7)),
      );
      expect(base.map((row, s) => [s, maxAbsDiff(row, noisy[s] as Float32Array)])).toEqual(base.map((_, s) => [s, 0]));
    });

    it('rows before <|image|> attend uniformly over every tile, padded included, and are not zeroed', async () => {
      // HF keeps the attention output of a row with no visible tile (mask 0 = attend to all 4·1601 keys) and
      // zeroes only its MLP branch; Meta's reference zeroes both, which would make rows 0-2 independent of the
      // image. Rows 0-2 must therefore move when only the padded tiles change, and when the image changes.
      const ids = [bos(), 20, 21, image(), 22, 23];
      const base = await prefillLogits(
        model,
        ids,
        twoTiles(realA, () => 0),
      );
      const noisyPad = await prefillLogits(
        model,
        ids,
        twoTiles(realA, (i) => Math.cos(i * 0.7)),
      );
      const other = await prefillLogits(
        model,
        ids,
        makeImage(() => 1, 2, [1, 1, 0, 0]),
      );
      for (const s of [0, 1, 2]) {
        expect(maxAbsDiff(base[s] as Float32Array, noisyPad[s] as Float32Array)).toBeGreaterThan(1e-4);
        expect(maxAbsDiff(base[s] as Float32Array, other[s] as Float32Array)).toBeGreaterThan(1e-4);
        expect((base[s] as Float32Array).every(Number.isFinite)).toBe(true);
      }
    });
  });

  it('abort and deadline stop generation with the matching reason', async () => {
    const ac = new AbortController();
    ac.abort();
    const aborted = await run(makeImage(pattern(5)), { signal: ac.signal });
    expect(aborted.stopReason).toBe('aborted');
    expect(aborted.tokenIds).toEqual([]);
    const late = await run(makeImage(pattern(5)), { deadlineMs: Date.now() - 1 });
    expect(late.stopReason).toBe('timeout');
    const ac2 = new AbortController();
    const mid = await run(makeImage(pattern(5)), {
      maxNewTokens: 12,
      stopTokenIds: [],
      signal: ac2.signal,
      onLogits: (step) => (step === 2 ? ac2.abort() : undefined),
    });
    expect(mid.stopReason).toBe('aborted');
    expect(mid.tokenIds).toHaveLength(3);
  });

  it('rejects malformed image input with a typed error', async () => {
    const bad = [
      { ...makeImage(() => 0), dims: [1, 1, 4, 3, 560, 559] },
      { ...makeImage(() => 0), aspectRatioId: 0 },
      { ...makeImage(() => 0), aspectRatioId: 9 },
      { ...makeImage(() => 0), aspectRatioMask: [0, 1, 0, 0] },
      { ...makeImage(() => 0), pixelValues: new Float32Array(10) },
    ];
    for (const img of bad) {
      const err = await run(img).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RadScribeError);
      expect((err as RadScribeError).code).toBe(ErrorCode.RequestInvalid);
    }
  });
});
