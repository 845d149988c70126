import * as ort from 'onnxruntime-node';
import { buildCrossAttentionMask, type CrossAttentionMask, lastRow } from './cross-attention-mask.js';
import { type ImageInput, numRealTiles, validateImageInput } from './image-input.js';
import { KvCache } from './kv-cache.js';
import type { MllamaModel } from './mllama-model.js';
import { Sampler, type SamplingOptions } from './sampling.js';
import {
  AbortCriterion,
  DeadlineCriterion,
  firstStop,
  MaxNewTokensCriterion,
  type StoppingCriterion,
  type StopReason,
  StopTokenCriterion,
} from './stopping.js';

/**
 * The generation loop (model-contract §11.5; transformers.js `modeling_utils.js` split: prepare inputs →
 * forward → sampler → stopping criteria → update kwargs). The vision encoder runs once; prefill feeds the
 * whole prompt; each decode step feeds one token with present→past. Only the last row of logits is read.
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
  /** Called with a copy of each step's last-token logits (tests, debugging). */
  onLogits?: (step: number, logits: Float32Array) => void;
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

function ones(n: number): ort.Tensor {
  return new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);
}

function positions(start: number, n: number): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: n }, (_, i) => BigInt(start + i)),
    [1, n],
  );
}

function maskTensor(m: CrossAttentionMask): ort.Tensor {
  return new ort.Tensor('int64', m.data, m.dims);
}

/** Copies the last sequence row of logits [1, S, V] and disposes the output. */
function lastLogits(logits: ort.Tensor): Float32Array {
  const [, S, V] = logits.dims as [number, number, number];
  const out = (logits.data as Float32Array).slice((S - 1) * V, S * V);
  logits.dispose();
  return out;
}

export async function generate(
  model: MllamaModel,
  promptIds: readonly number[],
  image: ImageInput,
  opts: GenerateOptions,
): Promise<GenerateResult> {
  validateImageInput(image, model.image);
  const imageTokenId = model.imageTokenId;
  const criteria: StoppingCriterion[] = [
    new StopTokenCriterion(opts.stopTokenIds),
    new MaxNewTokensCriterion(opts.maxNewTokens),
  ];
  if (opts.deadlineMs !== undefined) criteria.push(new DeadlineCriterion(opts.deadlineMs));
  if (opts.signal) criteria.push(new AbortCriterion(opts.signal));
  const sampler = new Sampler(opts.sampling ?? { doSample: false });
  const timings: GenerationTimings = { visionEncoderMs: 0, prefillMs: 0, decodeMs: [] };
  const generated: number[] = [];

  let stop = firstStop(criteria, generated);
  if (stop) return { tokenIds: generated, stopReason: stop, timings };

  let t0 = performance.now();
  const crossStates = await model.encodeImage(image);
  timings.visionEncoderMs = performance.now() - t0;
  const numTiles = [numRealTiles(image.aspectRatioMask)];
  const promptMask = buildCrossAttentionMask(promptIds, imageTokenId, numTiles, model.image.maxTiles);
  const stepMask = lastRow(promptMask);
  const cache = new KvCache(model.pastNames, model.text.kvHeads, model.text.headDim);
  const useCache = opts.useCache ?? true;

  try {
    for (let step = 0; ; step++) {
      stop = firstStop(criteria, generated);
      if (stop) break;
      t0 = performance.now();
      let ids: readonly number[];
      let mask: CrossAttentionMask;
      if (step === 0 || !useCache) {
        // Prefill (or full recompute): whole sequence, empty cache.
        ids = [...promptIds, ...generated];
        mask = buildCrossAttentionMask(ids, imageTokenId, numTiles, model.image.maxTiles);
        cache.reset();
      } else {
        ids = [generated.at(-1) as number];
        mask = stepMask;
      }
      const past = cache.pastLength;
      const embeds = await model.embedTokens(ids);
      const out = await model.decode({
        inputs_embeds: embeds,
        attention_mask: ones(past + ids.length),
        position_ids: positions(past, ids.length),
        cross_attention_states: crossStates,
        cross_attention_mask: maskTensor(mask),
        ...cache.feeds(),
      });
      embeds.dispose();
      cache.update(out);
      const logits = lastLogits(out.logits as ort.Tensor);
      opts.onLogits?.(step, logits.slice());
      generated.push(sampler.next(logits, [...promptIds, ...generated]));
      const ms = performance.now() - t0;
      if (step === 0) timings.prefillMs = ms;
      else timings.decodeMs.push(ms);
    }
  } finally {
    cache.dispose();
    crossStates.dispose();
  }
  return { tokenIds: generated, stopReason: stop, timings };
}
