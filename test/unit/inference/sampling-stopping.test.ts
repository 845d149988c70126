import { applyRepetitionPenalty, argmax, Sampler } from '../../../src/inference/sampling.js';
import {
  AbortCriterion,
  DeadlineCriterion,
  firstStop,
  MaxNewTokensCriterion,
  StopReason,
  StopTokenCriterion,
} from '../../../src/inference/stopping.js';

describe('sampling', () => {
  const logits = Float32Array.from([0.1, 2.5, -1, 2.4, 0]);

  it('greedy picks the argmax', () => {
    expect(argmax(logits)).toBe(1);
    expect(new Sampler({ doSample: false }).next(logits, [])).toBe(1);
  });

  it('repetition penalty follows HF (divide positive, multiply negative) and can change the greedy pick', () => {
    const p = applyRepetitionPenalty(logits, [1, 2], 2);
    expect(p[1]).toBeCloseTo(1.25);
    expect(p[2]).toBeCloseTo(-2);
    expect(p[3]).toBeCloseTo(2.4);
    expect(new Sampler({ doSample: false, repetitionPenalty: 2 }).next(logits, [1])).toBe(3);
  });

  it('seeded sampling is reproducible, top-k=1 equals greedy, top-p keeps only the nucleus', () => {
    const draw = (seed: number) => {
      const s = new Sampler({ doSample: true, temperature: 1, seed });
      return Array.from({ length: 50 }, () => s.next(logits, []));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(new Set(draw(7)).size).toBeGreaterThan(1);
    const k1 = new Sampler({ doSample: true, topK: 1, seed: 3 });
    for (let i = 0; i < 20; i++) expect(k1.next(logits, [])).toBe(1);
    const nucleus = new Sampler({ doSample: true, topP: 0.5, seed: 5, temperature: 1 });
    const seen = new Set(Array.from({ length: 100 }, () => nucleus.next(logits, [])));
    for (const id of seen) expect([1, 3]).toContain(id);
  });

  it('rejects invalid settings', () => {
    expect(() => new Sampler({ doSample: true, temperature: 0 })).toThrow(RangeError);
    expect(() => new Sampler({ doSample: true, topP: 1.5 })).toThrow(RangeError);
    expect(() => new Sampler({ doSample: true, topK: 0 })).toThrow(RangeError);
  });
});

describe('stopping criteria', () => {
  it('stop token, max tokens, deadline and abort', () => {
    expect(new StopTokenCriterion([7]).check([1, 7])).toBe(StopReason.StopToken);
    expect(new StopTokenCriterion([7]).check([7, 1])).toBeNull();
    expect(new MaxNewTokensCriterion(2).check([1])).toBeNull();
    expect(new MaxNewTokensCriterion(2).check([1, 2])).toBe(StopReason.MaxNewTokens);
    let now = 100;
    const d = new DeadlineCriterion(150, () => now);
    expect(d.check()).toBeNull();
    now = 150;
    expect(d.check()).toBe(StopReason.Timeout);
    const ac = new AbortController();
    const a = new AbortCriterion(ac.signal);
    expect(a.check()).toBeNull();
    ac.abort();
    expect(a.check()).toBe(StopReason.Aborted);
    expect(firstStop([new StopTokenCriterion([7]), a], [7])).toBe(StopReason.Aborted);
  });
});
