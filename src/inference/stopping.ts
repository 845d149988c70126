/**
 * Stopping criteria as small classes (transformers.js `generation/stopping_criteria.js`). The loop asks them
 * before every forward pass, with the tokens generated so far.
 */

export const StopReason = {
  /** The last generated token is in the stop set (generation_config eos_token_id). */
  StopToken: 'stop-token',
  MaxNewTokens: 'max-new-tokens',
  /** The deadline passed; the partial text is returned. */
  Timeout: 'timeout',
  /** The caller's AbortSignal fired; the partial text is returned. */
  Aborted: 'aborted',
} as const;
export type StopReason = (typeof StopReason)[keyof typeof StopReason];

export interface StoppingCriterion {
  check(generated: readonly number[]): StopReason | null;
}

export class StopTokenCriterion implements StoppingCriterion {
  private readonly ids: ReadonlySet<number>;
  constructor(ids: Iterable<number>) {
    this.ids = new Set(ids);
  }
  check(generated: readonly number[]): StopReason | null {
    const last = generated.at(-1);
    return last !== undefined && this.ids.has(last) ? StopReason.StopToken : null;
  }
}

export class MaxNewTokensCriterion implements StoppingCriterion {
  constructor(private readonly maxNewTokens: number) {
    if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 0))
      throw new RangeError('maxNewTokens must be an integer >= 0');
  }
  check(generated: readonly number[]): StopReason | null {
    return generated.length >= this.maxNewTokens ? StopReason.MaxNewTokens : null;
  }
}

export class DeadlineCriterion implements StoppingCriterion {
  constructor(
    private readonly deadlineMs: number,
    private readonly now: () => number = Date.now,
  ) {}
  check(): StopReason | null {
    return this.now() >= this.deadlineMs ? StopReason.Timeout : null;
  }
}

export class AbortCriterion implements StoppingCriterion {
  constructor(private readonly signal: AbortSignal) {}
  check(): StopReason | null {
    return this.signal.aborted ? StopReason.Aborted : null;
  }
}

/** Abort and timeout win over the token-based reasons, so a cancelled run never reports success. */
export function firstStop(criteria: readonly StoppingCriterion[], generated: readonly number[]): StopReason | null {
  let found: StopReason | null = null;
  for (const c of criteria) {
    const r = c.check(generated);
    if (r === StopReason.Aborted || r === StopReason.Timeout) return r;
    found ??= r;
  }
  return found;
}
