import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { RenderedImage } from '../src/dicom/render.js';
import { buildMllamaInput, parseMllamaPreprocessorConfig } from '../src/dicom/tiles.js';
import { generate } from '../src/inference/generate.js';
import type { ImageInput } from '../src/inference/image-input.js';
import { loadModelBundle } from '../src/inference/model-bundle.js';
import { createVisionLanguageModel } from '../src/inference/model-factory.js';
import { ChatTokenizer } from '../src/inference/tokenizer.js';
import { generateFixtureBundle } from '../tools/make-fixture-model.js';

/**
 * `npm run bench -- inference` (issue 4): CPU loop overhead of our generation loop on a random-weight Mllama
 * of realistic depth, generated at bench time into a temp dir (never committed):
 * - loop overhead = (generation wall time − time inside session.run) / generation wall time (goal < 3 %);
 * - tokens/s of generate() vs a bare loop that only calls session.run (embed + decoder, present→past,
 *   argmax) on its own sessions of the same bundle, interleaved in the same process (goal ≥ 0.97×);
 * - time to first token split into preprocess, vision encoder and prefill.
 * Not a timed test: numbers vary with the machine; the ratios are the point.
 */

const LAYERS = Number(process.env.BENCH_LAYERS ?? 16);
const HIDDEN = Number(process.env.BENCH_HIDDEN ?? 384);
const NEW_TOKENS = Number(process.env.BENCH_TOKENS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const THREADS = Number(process.env.BENCH_THREADS ?? 2);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function syntheticCt(): RenderedImage {
  const w = 512;
  const data = new Uint8Array(w * w);
  for (let i = 0; i < data.length; i++) data[i] = (Math.sin(i * 0.013) * 0.5 + 0.5) * 255;
  return { width: w, height: w, channels: 1, data };
}

function int64(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(values, (v) => BigInt(v)),
    dims,
  );
}

/** The least JS possible around session.run: same graphs, same feeds, greedy argmax. */
async function bareLoop(
  dir: string,
  promptIds: number[],
  image: ImageInput,
  imageToken: number,
  n: number,
  sessions: { vision: ort.InferenceSession; embed: ort.InferenceSession; decoder: ort.InferenceSession },
  kv: { names: readonly string[]; heads: number; dim: number },
): Promise<{ wallMs: number; tokens: number[] }> {
  void dir;
  const t0 = performance.now();
  const vis = await sessions.vision.run({
    pixel_values: new ort.Tensor('float32', image.pixelValues, image.dims),
    aspect_ratio_ids: int64([image.aspectRatioId ?? 1], [1, 1]),
    aspect_ratio_mask: int64(image.aspectRatioMask ?? [], [1, 1, 4]),
  });
  const states = vis.cross_attention_states as ort.Tensor;
  const loc = promptIds.indexOf(imageToken);
  const realTiles = (image.aspectRatioMask ?? []).filter((v) => v === 1).length;
  let past: Record<string, ort.Tensor> = {};
  for (const name of kv.names) past[name] = new ort.Tensor('float32', new Float32Array(0), [1, kv.heads, 0, kv.dim]);
  const tokens: number[] = [];
  let ids = promptIds;
  let pastLen = 0;
  for (let step = 0; step < n; step++) {
    const S = ids.length;
    const mask = new BigInt64Array(S * 4);
    for (let t = 0; t < S; t++) if (pastLen + t >= loc) for (let k = 0; k < realTiles; k++) mask[t * 4 + k] = 1n;
    const emb = await sessions.embed.run({ input_ids: int64(ids, [1, S]) });
    const out = await sessions.decoder.run({
      inputs_embeds: emb.inputs_embeds as ort.Tensor,
      attention_mask: int64(new Array(pastLen + S).fill(1), [1, pastLen + S]),
      position_ids: int64(
        Array.from({ length: S }, (_, i) => pastLen + i),
        [1, S],
      ),
      cross_attention_states: states,
      cross_attention_mask: new ort.Tensor('int64', mask, [1, S, 1, 4]),
      ...past,
    });
    const next: Record<string, ort.Tensor> = {};
    for (const name of kv.names) next[name] = out[name.replace('past_key_values.', 'present.')] as ort.Tensor;
    past = next;
    const logits = out.logits as ort.Tensor;
    const V = logits.dims[2] as number;
    const data = logits.data as Float32Array;
    let best = 0;
    for (let i = 1; i < V; i++) if ((data[(S - 1) * V + i] as number) > (data[(S - 1) * V + best] as number)) best = i;
    tokens.push(best);
    pastLen += S;
    ids = [best];
  }
  return { wallMs: performance.now() - t0, tokens };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-bench-'));
  try {
    generateFixtureBundle(dir, { family: 'mllama', layers: LAYERS, hidden: HIDDEN, seed: 7 });
    const bundle = await loadModelBundle(dir);
    const model = await createVisionLanguageModel(bundle, { executionProviders: ['cpu'], intraOpNumThreads: THREADS });
    const opts: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: THREADS,
    };
    const sessions = {
      vision: await ort.InferenceSession.create(bundle.onnxPaths.visionEncoder, opts),
      embed: await ort.InferenceSession.create(bundle.onnxPaths.embedTokens, opts),
      decoder: await ort.InferenceSession.create(bundle.onnxPaths.decoder, opts),
    };
    const tok = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
    });
    const promptIds = tok.encodePrompt(bundle.manifest.prompt, bundle.manifest.imagePosition);
    const tPre = performance.now();
    const image = buildMllamaInput(syntheticCt(), parseMllamaPreprocessorConfig(bundle.preprocessorConfig));
    const preprocessMs = performance.now() - tPre;
    const imageInput: ImageInput = {
      pixelValues: image.pixelValues,
      dims: image.dims,
      aspectRatioId: image.aspectRatioId,
      aspectRatioMask: image.aspectRatioMask,
    };
    const tc = bundle.config.text_config as { num_key_value_heads: number; head_dim: number };
    const kv = { names: model.kv.names, heads: tc.num_key_value_heads, dim: tc.head_dim };

    const ours = { wall: [] as number[], overhead: [] as number[], vision: [] as number[], prefill: [] as number[] };
    const bare: number[] = [];
    let sameTokens = true;
    // Warm-up of both paths, then interleaved rounds so drift affects both alike.
    await generate(model, promptIds, imageInput, { maxNewTokens: 4, stopTokenIds: [] });
    await bareLoop(dir, promptIds, imageInput, bundle.manifest.specialTokens.image, 4, sessions, kv);
    const runOurs = async () => {
      const run0 = model.runMs;
      const t0 = performance.now();
      const g = await generate(model, promptIds, imageInput, { maxNewTokens: NEW_TOKENS, stopTokenIds: [] });
      const wall = performance.now() - t0;
      const inside = model.runMs - run0;
      ours.wall.push(wall);
      ours.overhead.push((wall - inside) / wall);
      ours.vision.push(g.timings.visionEncoderMs);
      ours.prefill.push(g.timings.prefillMs);
      return g.tokenIds;
    };
    const runBare = async () => {
      const b = await bareLoop(
        dir,
        promptIds,
        imageInput,
        bundle.manifest.specialTokens.image,
        NEW_TOKENS,
        sessions,
        kv,
      );
      bare.push(b.wallMs);
      return b.tokens;
    };
    // Alternate which path goes first so an order effect (caches, frequency scaling) hits both alike.
    for (let r = 0; r < ROUNDS; r++) {
      const [a, b] = r % 2 === 0 ? [await runOurs(), await runBare()] : [await runBare(), await runOurs()];
      if (a.join() !== b.join()) sameTokens = false;
    }
    await model.dispose();
    await Promise.all(Object.values(sessions).map((s) => s.release()));

    if (process.env.BENCH_VERBOSE)
      process.stdout.write(
        `rounds ours ${ours.wall.map((x) => x.toFixed(0)).join(',')} bare ${bare.map((x) => x.toFixed(0)).join(',')}\n`,
      );
    // Best of N for throughput: this machine is shared and round times vary up to 2×; the fastest round of
    // each path is the least disturbed one. The overhead fraction is a ratio within one run: median.
    const oursTps = NEW_TOKENS / (Math.min(...ours.wall) / 1000);
    const bareTps = NEW_TOKENS / (Math.min(...bare) / 1000);
    const f = (x: number, d = 1) => x.toFixed(d);
    const rows = [
      '| measure | value | goal |',
      '|---|---|---|',
      `| fixture | random-weight Mllama, ${LAYERS} layers (${bundle.manifest.crossAttentionLayers.length} cross), hidden ${HIDDEN}, fp32, CPU EP, ${THREADS} threads | |`,
      `| tokens per run / rounds | ${NEW_TOKENS} / ${ROUNDS} (tokens/s: best round; overhead, TTFT: median) | |`,
      `| loop overhead (wall − inside session.run) / wall | ${f(median(ours.overhead) * 100, 2)} % | < 3 % |`,
      `| generate() tokens/s | ${f(oursTps)} | |`,
      `| bare session.run loop tokens/s | ${f(bareTps)} | |`,
      `| ratio generate / bare (best rounds) | ${f(oursTps / bareTps, 3)}× | ≥ 0.97× |`,
      `| ratio generate / bare (median rounds) | ${f(median(bare) / median(ours.wall), 3)}× | ≥ 0.97× |`,
      `| same tokens as the bare loop | ${sameTokens ? 'yes' : 'NO'} | yes |`,
      `| TTFT: preprocess (512² CT → 1 tile, tiles.ts) | ${f(preprocessMs)} ms | |`,
      `| TTFT: vision encoder (4 tiles) | ${f(median(ours.vision))} ms | |`,
      `| TTFT: prefill (${promptIds.length} prompt tokens) | ${f(median(ours.prefill))} ms | |`,
      `| TTFT total | ${f(preprocessMs + median(ours.vision) + median(ours.prefill))} ms | |`,
    ];
    process.stdout.write(`${rows.join('\n')}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
