import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, ModelError, RadScribeError } from '../../src/errors.js';
import { InferenceClient } from '../../src/inference/inference-client.js';
import { makeImage, makePlainImage, pattern, TINY_MERGE_DIR, TINY_MLLAMA_DIR } from '../unit/inference/helpers.js';

/** InferenceClient ↔ inference-worker (compiled dist file, a child process) with the tiny fixture on the CPU EP. */
describe('InferenceClient (inference process)', () => {
  let client: InferenceClient;
  beforeAll(async () => {
    client = await InferenceClient.start({
      bundleDir: TINY_MLLAMA_DIR,
      executionProviders: ['cpu'],
      intraOpNumThreads: 1,
    });
  });
  afterAll(async () => {
    await client.close();
  });

  it('exposes the manifest and the provider actually loaded', () => {
    expect(client.manifest.name).toBe('radscribe-tiny-mllama-fixture');
    expect(client.manifest.fixture).toBe(true);
    expect(client.provider).toBe('cpu');
    expect(client.preprocessorConfigPath).toBe(path.join(TINY_MLLAMA_DIR, 'preprocessor_config.json'));
  });

  it('describes an image deterministically; text is printable ASCII; the caller keeps its pixel buffer', async () => {
    const img = makeImage(pattern(11), 6, [1, 1, 1, 1]);
    const a = await client.describe(img, { maxNewTokens: 10 });
    expect(img.pixelValues.byteLength).toBe(4 * 3 * 560 * 560 * 4);
    const b = await client.describe(makeImage(pattern(11), 6, [1, 1, 1, 1]), { maxNewTokens: 10 });
    expect(b.tokenIds).toEqual(a.tokenIds);
    expect(b.text).toBe(a.text);
    expect(a.stopReason).toBe(a.tokenIds.length === 10 ? 'max-new-tokens' : 'stop-token');
    expect(a.text).toMatch(/^[\x20-\x7e\n]*$/);
    expect(a.provider).toBe('cpu');
    expect(a.model).toEqual({
      name: client.manifest.name,
      version: client.manifest.version,
      path: TINY_MLLAMA_DIR,
      fixture: true,
      label: 'test fixture — output is meaningless',
    });
    expect(a.timings.decodeMs.length).toBe(a.tokenIds.length - 1);
  });

  it('runs ONNX Runtime outside this process, so the main event loop keeps turning during generation', async () => {
    // The sessions live in a child process (inference-client.ts): run() can never block our loop.
    expect(client.inferencePid).toBeGreaterThan(0);
    expect(client.inferencePid).not.toBe(process.pid);
    const img = makeImage(pattern(12));
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      ticks++;
      last = now;
    }, 5);
    const r = await client.describe(img, { maxNewTokens: 48 });
    clearInterval(timer);
    expect(r.tokenIds.length).toBeGreaterThan(5);
    // Timer ticks keep arriving while the model runs. The bound is loose on purpose: on a loaded
    // 2-core CI machine scheduling alone can delay a tick by tens of milliseconds.
    expect(ticks).toBeGreaterThan(0);
    expect(maxGap).toBeLessThan(1_000);
  });

  it('an AbortSignal ends generation early with stopReason aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await client.describe(makeImage(pattern(13)), { maxNewTokens: 48, signal: ac.signal });
    expect(r.stopReason).toBe('aborted');
    expect(r.tokenIds.length).toBeLessThan(48);
  });

  it('a zero timeout returns stopReason timeout', async () => {
    const r = await client.describe(makeImage(pattern(14)), { maxNewTokens: 48, timeoutMs: 0 });
    expect(r.stopReason).toBe('timeout');
  });

  it('bad input comes back as a typed error and the worker keeps serving', async () => {
    const bad = { ...makeImage(() => 0), aspectRatioId: 42 };
    await expect(client.describe(bad)).rejects.toMatchObject({ code: ErrorCode.RequestInvalid });
    const ok = await client.describe(makeImage(pattern(15)), { maxNewTokens: 2 });
    expect(ok.tokenIds.length).toBeGreaterThan(0);
  });

  it('start() on a bad bundle fails with ModelError naming the problem; close() is idempotent', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'no-bundle-'));
    try {
      const err = await InferenceClient.start({ bundleDir: empty }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ModelError);
      expect((err as ModelError).code).toBe(ErrorCode.ModelInvalid);
      expect((err as ModelError).message).toContain('manifest.json');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    const c2 = await InferenceClient.start({ bundleDir: TINY_MLLAMA_DIR });
    await c2.close();
    await c2.close();
    await expect(c2.describe(makeImage(() => 0))).rejects.toBeInstanceOf(RadScribeError);
  });

  it('a run past its hard limit terminates the worker; the client recovers with a fresh worker', async () => {
    const before = client.restarts;
    // No soft deadline: only the hard limit can end this call, and 1 ms is shorter than any generation.
    const err = await client.describe(makeImage(pattern(16)), { maxNewTokens: 48, hardTimeoutMs: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RadScribeError);
    expect((err as RadScribeError).code).toBe(ErrorCode.Timeout);
    expect((err as RadScribeError).message).toContain('hard limit');
    expect(client.restarts).toBe(before + 1);
    const ok = await client.describe(makeImage(pattern(15)), { maxNewTokens: 2 });
    expect(ok.tokenIds.length).toBeGreaterThan(0);
  });

  it('describeBatch decodes several images at once with the results of one at a time', async () => {
    const imgs = () => [makeImage(pattern(21), 6, [1, 1, 1, 1]), makeImage(() => 0), makeImage(() => 1)];
    const batched = await client.describeBatch(imgs(), { maxNewTokens: 6 });
    const single = [];
    for (const img of imgs()) single.push(await client.describe(img, { maxNewTokens: 6 }));
    expect(batched.map((r) => r.tokenIds)).toEqual(single.map((r) => r.tokenIds));
    expect(client.dynamicBatch).toBe(true);
  });
});

describe('InferenceClient with the embedding-merge fixture', () => {
  it('loads the family from the manifest and describes a plain 224² image', async () => {
    const c = await InferenceClient.start({ bundleDir: TINY_MERGE_DIR, executionProviders: ['cpu'] });
    try {
      expect(c.manifest.modelFamily).toBe('embedding-merge');
      expect(c.preprocessorConfig.image_processor_type).toBe('SiglipImageProcessor');
      const r = await c.describe(
        makePlainImage((i) => Math.sin(i * 0.01)),
        { maxNewTokens: 5 },
      );
      expect(r.tokenIds.length).toBeGreaterThan(0);
      expect(r.promptTokens).toBeGreaterThan(c.manifest.imageTokensPerImage as number);
      await expect(c.describe(makeImage(() => 0))).rejects.toMatchObject({ code: ErrorCode.RequestInvalid });
    } finally {
      await c.close();
    }
  });
});
