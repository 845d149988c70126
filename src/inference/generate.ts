import * as ort from 'onnxruntime-node';
import { ErrorCode, RadScribeError } from '../errors.js';
import { floatData } from './float16.js';
import type { ImageInput } from './image-input.js';
import { KvCache } from './kv-cache.js';
import { Sampler, type SamplingOptions } from './sampling.js';
import {
  AbortCriterion,
  DeadlineCriterion,
  firstStop,
  MaxNewTokensCriterion,
  type StoppingCriterion,
  StopReason,
  StopTokenCriterion,
} from './stopping.js';
import type { VisionLanguageModel } from './vision-language-model.js';

/**
 * The generation loop (model-contract §11.5; transformers.js `modeling_utils.js` split: prepare inputs →
 * forward → sampler → stopping criteria → update kwargs), family-agnostic over `VisionLanguageModel`. The
 * vision encoder runs once; prefill feeds the whole prompt; each decode step feeds one token per row with
 * present→past. Only the last row of logits is read (and only it is computed when the graph has
 * num_logits_to_keep). Several images are decoded as one batch when the graphs have a dynamic batch
 * dimension; every row has its own sampler and stopping state, so a batch gives exactly what each image
 * gives alone.
 */

export interface GenerateOptions {
  maxNewTokens: number;
  stopTokenIds: readonly number[];
  sampling?: SamplingOptions;
  /** Absolute epoch ms after which generation stops with 'timeout'. */
  deadlineMs?: number;
  signal?: AbortSignal;
  /**
   * false = recompute the whole sequence every step with an empty cache. Slow; exists so tests can prove the
   * KV-cache path gives the same tokens and logits.
   */
  useCache?: boolean;
  /** Called with a copy of each step's last-token logits (tests, debugging); `row` is the batch row. */
  onLogits?: (step: number, logits: Float32Array, row: number) => void;
  /** Batch several images in one run when the graphs allow it (default true); false = one at a time. */
  batch?: boolean;
}

export interface GenerationTimings {
  visionEncoderMs: number;
  prefillMs: number;
  decodeMs: number[];
}

export interface GenerateResult {
  tokenIds: number[];
  stopReason: StopReason;
  timings: GenerationTimings;
}

function int64(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(Array.from(values), (v) => BigInt(v)),
    dims,
  );
}

/**
 * Last sequence row of logits [B, S, V] for row b, as float32 (fp16 logits are decoded). A view, not a copy: it
 * is read synchronously before the tensor is disposed (onLogits gets its own copy).
 */
function lastLogits(values: Float32Array, dims: readonly number[], b: number): Float32Array {
  const [, S, V] = dims as [number, number, number];
  const start = (b * S + (S - 1)) * V;
  return values.subarray(start, start + V);
}

/** One image; see generateBatch. */
export async function generate(
  model: VisionLanguageModel,
  promptIds: readonly number[],
  image: ImageInput,
  opts: GenerateOptions,
): Promise<GenerateResult> {
  const [r] = await generateBatch(model, promptIds, [image], opts);
  return r as GenerateResult;
}

/**
 * Describes `images` with the same prompt. `promptIds` is the rendered chat template with one image token;
 * the model expands it as its family needs. Batched when the graphs allow, else one image after another.
 */
export async function generateBatch(
  model: VisionLanguageModel,
  promptIds: readonly number[],
  images: readonly ImageInput[],
  opts: GenerateOptions,
): Promise<GenerateResult[]> {
  if (images.length === 0) return [];
  for (const img of images) model.validateImage(img);
  if (images.length > 1 && (!model.dynamicBatch || opts.batch === false)) {
    const out: GenerateResult[] = [];
    for (const img of images) out.push(...(await runBatch(model, promptIds, [img], opts)));
    return out;
  }
  return runBatch(model, promptIds, images, opts);
}

async function runBatch(
  model: VisionLanguageModel,
  promptIds: readonly number[],
  images: readonly ImageInput[],
  opts: GenerateOptions,
): Promise<GenerateResult[]> {
  const B = images.length;
  const global: StoppingCriterion[] = [];
  if (opts.deadlineMs !== undefined) global.push(new DeadlineCriterion(opts.deadlineMs));
  if (opts.signal) global.push(new AbortCriterion(opts.signal));
  const perRow: StoppingCriterion[] = [
    new StopTokenCriterion(opts.stopTokenIds),
    new MaxNewTokensCriterion(opts.maxNewTokens),
  ];
  const ids = model.expandPrompt(promptIds);
  const rows = images.map(() => ({
    history: [...ids],
    generated: [] as number[],
    stop: null as StopReason | null,
    sampler: new Sampler(opts.sampling ?? { doSample: false }),
    timings: { visionEncoderMs: 0, prefillMs: 0, decodeMs: [] as number[] },
  }));
  const finish = () =>
    rows.map((r) => ({ tokenIds: r.generated, stopReason: r.stop as StopReason, timings: r.timings }));
  const checkStops = (): boolean => {
    const g = firstStop(global, []);
    for (const r of rows) {
      if (r.stop) continue;
      r.stop = g ?? firstStop(perRow, r.generated);
    }
    return rows.every((r) => r.stop);
  };
  if (checkStops()) return finish();

  let t0 = performance.now();
  const enc = await model.encodeImages(images);
  const visionMs = performance.now() - t0;
  for (const r of rows) r.timings.visionEncoderMs = visionMs;
  const cache = new KvCache(model.kv, B);
  const useCache = opts.useCache ?? true;
  const keepLogits = model.optionalDecoderInputs.has('num_logits_to_keep');
  const pad = opts.stopTokenIds[0] ?? 0;

  try {
    for (let step = 0; ; step++) {
      if (checkStops()) break;
      t0 = performance.now();
      const full = step === 0 || !useCache;
      if (full) cache.reset();
      const past = cache.pastLength;
      const seqLen = rows[0]?.history.length ?? 0;
      const newCount = full ? seqLen : 1;
      const inputs = await model.decoderInputs(
        enc,
        rows.map((r) => r.history),
        newCount,
      );
      const total = past + newCount;
      const positions = Array.from({ length: B * newCount }, (_, i) => past + (i % newCount));
      const feeds: Record<string, ort.Tensor> = {
        ...inputs,
        attention_mask: int64(new Array<number>(B * total).fill(1), [B, total]),
        position_ids: int64(positions, [B, newCount]),
        ...cache.feeds(),
      };
      if (keepLogits) feeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.of(1n), []);
      if (model.optionalDecoderInputs.has('use_cache_branch'))
        feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(past > 0 ? 1 : 0), [1]);
      let out: Record<string, ort.Tensor>;
      try {
        out = await model.decode(feeds);
      } finally {
        inputs.inputs_embeds?.dispose();
      }
      cache.update(out);
      const logitsT = out.logits;
      if (!logitsT) throw new RadScribeError(ErrorCode.InferenceFailed, 'decoder returned no logits');
      const values = floatData(logitsT);
      const ms = performance.now() - t0;
      rows.forEach((r, b) => {
        if (r.stop) {
          // A finished row keeps its place in the batch; it is fed padding that is never reported.
          r.history.push(pad);
          return;
        }
        const logits = lastLogits(values, logitsT.dims, b);
        opts.onLogits?.(step, logits.slice(), b);
        const next = r.sampler.next(logits, r.history);
        r.generated.push(next);
        r.history.push(next);
        if (step === 0) r.timings.prefillMs = ms;
        else r.timings.decodeMs.push(ms);
      });
      logitsT.dispose();
    }
  } finally {
    cache.dispose();
    enc.dispose();
  }
  return finish();
}

export { StopReason };
