import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { RenderedImage } from '../src/dicom/render.js';
import { buildMllamaInput, parseMllamaPreprocessorConfig } from '../src/dicom/tiles.js';
import { floatData, floatTensor } from '../src/inference/float16.js';
import { generate } from '../src/inference/generate.js';
import type { ImageInput } from '../src/inference/image-input.js';
import { loadModelBundle, type ModelBundle } from '../src/inference/model-bundle.js';
import { createVisionLanguageModel } from '../src/inference/model-factory.js';
import { ChatTokenizer } from '../src/inference/tokenizer.js';
import { ExecutionProvider, type VisionLanguageModel } from '../src/inference/vision-language-model.js';
import { FIXTURES_DIR } from '../src/runtime-paths.js';
import { generateFixtureBundle } from '../tools/make-fixture-model.js';
import { spread } from './support/stow-load.js';

/**
 * `npm run bench -- inference [--ep cpu|cuda] [--bundle <dir>]` (issues 4 and 10): the cost of our generation
 * loop against a bare `session.run` loop on the same graphs, in the same process, rounds interleaved (the order
 * alternates each round so drift and cache effects hit both alike):
 * - loop overhead = (generation wall time − time inside session.run) / generation wall time (goal < 3 %);
 * - tokens/s of generate() vs the bare loop (embed + decoder, present→past, argmax; goal ≥ 0.97×);
 * - time to first token split into vision encoder and prefill, and the decode time per token;
 * - the vision encoder alone on images that tile into 1, 2, 3 and 4 tiles (tiles.ts), rounds interleaved.
 * Bundles: the stand-in (random-weight hand-built graphs of realistic depth, generated into a temp dir) and the
 * real-architecture fixture test/fixtures/models/tiny-mllama-real (HF Mllama exported by tools/export); with
 * --bundle, that bundle only (bench/gpu/run.sh passes the exported 11B bundle and --ep cuda).
 * Every figure is the median of the rounds with min–max. Not a timed test: the ratios are the point.
 */

const LAYERS = Number(process.env.BENCH_LAYERS ?? 16);
const HIDDEN = Number(process.env.BENCH_HIDDEN ?? 384);
const NEW_TOKENS = Number(process.env.BENCH_TOKENS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const THREADS = Number(process.env.BENCH_THREADS ?? 2);

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** A smooth grey image of w × h pixels (the tiler decides how many 560² tiles it needs). */
function syntheticImage(w: number, h: number): RenderedImage {
  const data = new Uint8Array(w * h);
  for (let i = 0; i < data.length; i++) data[i] = (Math.sin(i * 0.013) * 0.5 + 0.5) * 255;
  return { width: w, height: h, channels: 1, data };
}

function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(Array.from(values), (v) => BigInt(v)),
    dims,
  );
}

type FloatType = 'float32' | 'float16';

interface BareSessions {
  vision: ort.InferenceSession;
  embed: ort.InferenceSession;
  decoder: ort.InferenceSession;
  pixelType: FloatType;
  kv: { names: readonly string[]; heads: number; dim: number; type: FloatType };
}

function visionFeeds(s: BareSessions, image: ImageInput): Record<string, ort.Tensor> {
  return {
    pixel_values: floatTensor(s.pixelType, image.pixelValues, image.dims),
    aspect_ratio_ids: int64([image.aspectRatioId ?? 1], [1, 1]),
    aspect_ratio_mask: int64(image.aspectRatioMask ?? [], [1, 1, image.aspectRatioMask?.length ?? 4]),
  };
}

/** The least JS possible around session.run: same graphs, same feeds, greedy argmax. */
async function bareLoop(
  s: BareSessions,
  promptIds: number[],
  image: ImageInput,
  imageToken: number,
  n: number,
): Promise<{ wallMs: number; visionMs: number; tokens: number[] }> {
  const t0 = performance.now();
  const vis = await s.vision.run(visionFeeds(s, image));
  const visionMs = performance.now() - t0;
  const states = vis.cross_attention_states as ort.Tensor;
  const loc = promptIds.indexOf(imageToken);
  const maxTiles = image.aspectRatioMask?.length ?? 4;
  const realTiles = (image.aspectRatioMask ?? []).filter((v) => v === 1).length;
  let past: Record<string, ort.Tensor> = {};
  for (const name of s.kv.names) past[name] = floatTensor(s.kv.type, new Float32Array(0), [1, s.kv.heads, 0, s.kv.dim]);
  const tokens: number[] = [];
  let ids = promptIds;
  let pastLen = 0;
  for (let step = 0; step < n; step++) {
    const S = ids.length;
    const mask = new BigInt64Array(S * maxTiles);
    for (let t = 0; t < S; t++) if (pastLen + t >= loc) for (let k = 0; k < realTiles; k++) mask[t * maxTiles + k] = 1n;
    const emb = await s.embed.run({ input_ids: int64(ids, [1, S]) });
    const out = await s.decoder.run({
      inputs_embeds: emb.inputs_embeds as ort.Tensor,
      attention_mask: int64(new Array(pastLen + S).fill(1), [1, pastLen + S]),
      position_ids: int64(
        Array.from({ length: S }, (_, i) => pastLen + i),
        [1, S],
      ),
      cross_attention_states: states,
      cross_attention_mask: new ort.Tensor('int64', mask, [1, S, 1, maxTiles]),
      ...past,
    });
    const next: Record<string, ort.Tensor> = {};
    for (const name of s.kv.names) next[name] = out[name.replace('past_key_values.', 'present.')] as ort.Tensor;
    past = next;
    const logits = out.logits as ort.Tensor;
    const V = logits.dims[2] as number;
    const data = floatData(logits);
    let best = 0;
    for (let i = 1; i < V; i++) if ((data[(S - 1) * V + i] as number) > (data[(S - 1) * V + best] as number)) best = i;
    tokens.push(best);
    pastLen += S;
    ids = [best];
  }
  return { wallMs: performance.now() - t0, visionMs, tokens };
}

const f = (x: number, d = 1) => x.toFixed(d);
const fs = (xs: number[], d = 1) => {
  const s = spread(xs);
  return `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`;
};

/** Image sizes the tiler turns into 1, 2, 3 and 4 tiles of 560² (aspect ratios 1×1, 1×2, 1×3, 2×2). */
const TILE_CASES = [
  { tiles: 1, w: 512, h: 512 },
  { tiles: 2, w: 1000, h: 500 },
  { tiles: 3, w: 1500, h: 480 },
  { tiles: 4, w: 1000, h: 1000 },
] as const;

async function benchBundle(bundle: ModelBundle, describe: string, ep: ExecutionProvider): Promise<string> {
  const model: VisionLanguageModel = await createVisionLanguageModel(bundle, {
    executionProviders: [ep],
    intraOpNumThreads: THREADS,
  });
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: THREADS,
  };
  const pixelType = (bundle.manifest.onnx.visionEncoder.inputs.find((t) => t.name === 'pixel_values')?.dtype ??
    'float32') as FloatType;
  const s: BareSessions = {
    vision: await ort.InferenceSession.create(bundle.onnxPaths.visionEncoder, opts),
    embed: await ort.InferenceSession.create(bundle.onnxPaths.embedTokens, opts),
    decoder: await ort.InferenceSession.create(bundle.onnxPaths.decoder, opts),
    pixelType,
    kv: { names: model.kv.names, heads: model.kv.kvHeads, dim: model.kv.headDim, type: model.kv.dtype },
  };
  try {
    const tok = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
      chatTemplate: bundle.manifest.chatTemplate,
    });
    const promptIds = tok.encodePrompt(bundle.manifest.prompt, bundle.manifest.imagePosition);
    const imageToken = bundle.manifest.specialTokens.image;
    const cfg = parseMllamaPreprocessorConfig(bundle.preprocessorConfig);
    const toInput = (img: RenderedImage): ImageInput => {
      const t = buildMllamaInput(img, cfg);
      return {
        pixelValues: t.pixelValues,
        dims: t.dims,
        aspectRatioId: t.aspectRatioId,
        aspectRatioMask: t.aspectRatioMask,
      };
    };
    const preprocessMs: number[] = [];
    const tiled = TILE_CASES.map((c) => {
      const t0 = performance.now();
      const input = toInput(syntheticImage(c.w, c.h));
      preprocessMs.push(performance.now() - t0);
      const got = (input.aspectRatioMask ?? []).filter((v) => v === 1).length;
      if (got !== c.tiles) throw new Error(`bench: ${c.w}×${c.h} gave ${got} tiles, expected ${c.tiles}`);
      return { ...c, input };
    });
    const image = tiled[0]?.input as ImageInput; // generation runs on the 1-tile image (a 512² CT slice)

    const ours = { wall: [] as number[], overhead: [] as number[], vision: [] as number[], prefill: [] as number[] };
    const decodePerToken: number[] = [];
    const bare: number[] = [];
    const bareAfterVision: number[] = [];
    let sameTokens = true;
    await generate(model, promptIds, image, { maxNewTokens: 4, stopTokenIds: [] }); // warm-up of both paths
    await bareLoop(s, promptIds, image, imageToken, 4);
    const runOurs = async () => {
      const run0 = model.runMs;
      const t0 = performance.now();
      const g = await generate(model, promptIds, image, { maxNewTokens: NEW_TOKENS, stopTokenIds: [] });
      const wall = performance.now() - t0;
      ours.wall.push(wall);
      ours.overhead.push((wall - (model.runMs - run0)) / wall);
      ours.vision.push(g.timings.visionEncoderMs);
      ours.prefill.push(g.timings.prefillMs);
      decodePerToken.push(g.timings.decodeMs.reduce((a, b) => a + b, 0) / Math.max(1, g.timings.decodeMs.length));
      return g.tokenIds;
    };
    const runBare = async () => {
      const b = await bareLoop(s, promptIds, image, imageToken, NEW_TOKENS);
      bare.push(b.wallMs);
      bareAfterVision.push(b.wallMs - b.visionMs);
      return b.tokens;
    };
    for (let r = 0; r < ROUNDS; r++) {
      const [a, b] = r % 2 === 0 ? [await runOurs(), await runBare()] : [await runBare(), await runOurs()];
      if (a.join() !== b.join()) sameTokens = false;
    }

    // Vision encoder alone per tile count; each round visits 1..4 in a rotated order.
    const visionByTiles = new Map<number, number[]>(TILE_CASES.map((c) => [c.tiles, []]));
    for (const c of tiled) await s.vision.run(visionFeeds(s, c.input)); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < tiled.length; i++) {
        const c = tiled[(i + r) % tiled.length];
        if (!c) continue;
        const t0 = performance.now();
        await s.vision.run(visionFeeds(s, c.input));
        visionByTiles.get(c.tiles)?.push(performance.now() - t0);
      }
    }

    const tps = (wall: number[]) => wall.map((w) => NEW_TOKENS / (w / 1000));
    const ratio = ours.wall.map((w, i) => (bare[i] as number) / w);
    const oursAfterVision = ours.wall.map((w, i) => w - (ours.vision[i] as number));
    const ratioAfterVision = oursAfterVision.map((w, i) => (bareAfterVision[i] as number) / w);
    const v1 = spread(visionByTiles.get(1) ?? []).median;
    const rows = [
      `## ${bundle.manifest.name}`,
      '',
      '| measure | value: median (min–max) | goal |',
      '|---|---|---|',
      `| bundle | ${describe}; ${ep} EP, ${THREADS} threads | |`,
      `| tokens per run / rounds | ${NEW_TOKENS} / ${ROUNDS}, generate() and bare loop interleaved | |`,
      `| loop overhead (wall − inside session.run) / wall | ${fs(
        ours.overhead.map((x) => x * 100),
        2,
      )} % | < 3 % |`,
      `| generate() tokens/s (whole run: vision + prefill + decode) | ${fs(tps(ours.wall))} | |`,
      `| bare session.run loop tokens/s (whole run) | ${fs(tps(bare))} | |`,
      `| ratio generate / bare (per round) | ${fs(ratio, 3)}× | ≥ 0.97× |`,
      `| tokens/s after the vision encoder (prefill + decode): generate() | ${fs(tps(oursAfterVision))} | |`,
      `| tokens/s after the vision encoder: bare loop | ${fs(tps(bareAfterVision))} | |`,
      `| ratio generate / bare after the vision encoder (per round) | ${fs(ratioAfterVision, 3)}× | ≥ 0.97× |`,
      `| same tokens as the bare loop | ${sameTokens ? 'yes' : 'NO'} | yes |`,
      `| TTFT: preprocess (512² → 1 tile, tiles.ts) | ${f(preprocessMs[0] ?? 0)} ms (once) | |`,
      `| TTFT: vision encoder (1 tile) | ${fs(ours.vision)} ms | |`,
      `| TTFT: prefill (${model.expandPrompt(promptIds).length} prompt tokens) | ${fs(ours.prefill)} ms | |`,
      `| TTFT total (median parts) | ${f((preprocessMs[0] ?? 0) + spread(ours.vision).median + spread(ours.prefill).median)} ms | |`,
      `| decode per token (after the first) | ${fs(decodePerToken, 2)} ms | |`,
      '',
      '| tiles | image | vision encoder ms: median (min–max) | × 1 tile |',
      '|---|---|---|---|',
      ...tiled.map((c) => {
        const xs = visionByTiles.get(c.tiles) ?? [];
        return `| ${c.tiles} | ${c.w}×${c.h} | ${fs(xs)} | ${f(spread(xs).median / v1, 2)} |`;
      }),
    ];
    return rows.join('\n');
  } finally {
    await model.dispose();
    await Promise.all([s.vision.release(), s.embed.release(), s.decoder.release()]);
  }
}

export async function run(): Promise<void> {
  const ep = (arg('ep') ?? ExecutionProvider.Cpu) as ExecutionProvider;
  const only = arg('bundle');
  if (only) {
    const b = await loadModelBundle(only);
    const desc = `${b.manifest.name} ${b.manifest.version} (${b.manifest.provenance.weights})`;
    process.stdout.write(`${await benchBundle(b, desc, ep)}\n`);
    return;
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-bench-'));
  try {
    generateFixtureBundle(dir, { family: 'mllama', layers: LAYERS, hidden: HIDDEN, seed: 7 });
    const standIn = `stand-in: random-weight hand-built Mllama graphs, ${LAYERS} layers, hidden ${HIDDEN}, fp32`;
    process.stdout.write(`${await benchBundle(await loadModelBundle(dir), standIn, ep)}\n\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const real = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real');
  if (existsSync(real)) {
    const b = await loadModelBundle(real);
    const tc = b.config.text_config as { num_hidden_layers: number; hidden_size: number };
    const desc =
      `real architecture: HF MllamaForConditionalGeneration exported by tools/export (random weights), ` +
      `${tc.num_hidden_layers} text layers (${b.manifest.crossAttentionLayers.length} cross), hidden ${tc.hidden_size}, ` +
      'vision 560² tiles × 4, 1601 tokens/tile, fp32';
    process.stdout.write(`${await benchBundle(b, desc, ep)}\n`);
  }
}
