import { Mulberry32 } from './prng.js';

/**
 * Logits → next token (transformers.js `modeling_utils.js`: logits processors → sampler). Greedy by default:
 * clinical drafts should be deterministic (model-contract §11.5); sampling is seeded so it is reproducible.
 */

export interface SamplingOptions {
  doSample: boolean;
  /** Blog defaults for Llama 3.2 Vision are 0.6 / 0.9 (model-contract §2.1). */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** HF RepetitionPenaltyLogitsProcessor: >1 discourages tokens already generated or in the prompt. */
  repetitionPenalty?: number;
  /** HF NoRepeatNGramLogitsProcessor: an n-gram of this size never occurs twice (0 = off). */
  noRepeatNgramSize?: number;
  seed?: number;
}

/**
 * Tokens that would repeat an n-gram already in `history` (HF `_get_ngrams` / `_get_generated_ngrams`): the
 * last n−1 tokens form the prefix; every earlier occurrence of that prefix bans the token that followed it.
 */
export function bannedNgramTokens(history: readonly number[], n: number): Set<number> {
  const banned = new Set<number>();
  if (n <= 0 || history.length + 1 < n) return banned;
  const start = history.length - (n - 1);
  for (let i = 0; i + n <= history.length; i++) {
    let match = true;
    for (let j = 0; j < n - 1; j++) {
      if (history[i + j] !== history[start + j]) {
        match = false;
        break;
      }
    }
    if (match) banned.add(history[i + n - 1] as number);
  }
  return banned;
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestV = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/** HF semantics: positive logits are divided by the penalty, negative ones multiplied. Returns a copy. */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): Float32Array {
  const out = logits.slice();
  if (penalty === 1) return out;
  for (const id of new Set(seen)) {
    const v = out[id];
    if (v === undefined) continue;
    out[id] = v > 0 ? v / penalty : v * penalty;
  }
  return out;
}

export class Sampler {
  private readonly rng: Mulberry32;

  constructor(private readonly opts: SamplingOptions) {
    for (const [k, v] of Object.entries({
      temperature: opts.temperature,
      topP: opts.topP,
      repetitionPenalty: opts.repetitionPenalty,
    })) {
      if (v !== undefined && !(v > 0)) throw new RangeError(`${k} must be > 0`);
    }
    if (opts.topP !== undefined && opts.topP > 1) throw new RangeError('topP must be <= 1');
    if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK > 0))
      throw new RangeError('topK must be a positive integer');
    if (
      opts.noRepeatNgramSize !== undefined &&
      !(Number.isInteger(opts.noRepeatNgramSize) && opts.noRepeatNgramSize >= 0)
    )
      throw new RangeError('noRepeatNgramSize must be an integer >= 0');
    this.rng = new Mulberry32(opts.seed ?? 0);
  }

  /** @param history prompt + generated ids, for the repetition penalty. */
  next(logits: Float32Array, history: readonly number[]): number {
    const penalty = this.opts.repetitionPenalty ?? 1;
    const banned = bannedNgramTokens(history, this.opts.noRepeatNgramSize ?? 0);
    // Greedy with nothing to adjust reads the row in place: a copy of a 128256-wide row per step was 3 % of a
    // decode step on the real-architecture fixture (bench: inference, loop overhead).
    if (!this.opts.doSample && penalty === 1 && banned.size === 0) return argmax(logits);
    const scores = applyRepetitionPenalty(logits, history, penalty);
    for (const id of banned) {
      if (id < scores.length) scores[id] = Number.NEGATIVE_INFINITY;
    }
    if (!this.opts.doSample) return argmax(scores);
    const temperature = this.opts.temperature ?? 1;
    // Sort once; top-k then top-p (nucleus) keep a prefix of the sorted candidates (HF warper order).
    const order = Array.from(scores.keys()).sort((a, b) => (scores[b] as number) - (scores[a] as number));
    const kept = order.slice(0, this.opts.topK ?? order.length);
    const maxV = scores[kept[0] as number] as number;
    const weights = kept.map((id) => Math.exp(((scores[id] as number) - maxV) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    const topP = this.opts.topP ?? 1;
    let cum = 0;
    let n = 0;
    while (n < kept.length) {
      cum += (weights[n] as number) / total;
      n++;
      if (cum >= topP) break;
    }
    const sub = weights.slice(0, n);
    const subTotal = sub.reduce((a, b) => a + b, 0);
    let r = this.rng.next() * subTotal;
    for (let i = 0; i < n; i++) {
      r -= sub[i] as number;
      if (r < 0) return kept[i] as number;
    }
    return kept[n - 1] as number;
  }
}
