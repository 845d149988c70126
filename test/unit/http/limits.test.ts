import { ConcurrencyGate, RateLimitedError, RateLimiter } from '../../../src/http/limits.js';

describe('request limits', () => {
  it('a token bucket per caller: a burst of perMinute, then one per 60/perMinute s, Retry-After in seconds', () => {
    let now = 0;
    const r = new RateLimiter(60, () => now);
    for (let i = 0; i < 60; i++) r.take('a');
    let err: unknown;
    try {
      r.take('a');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RateLimitedError);
    expect((err as RateLimitedError).retryAfterSeconds).toBe(1);
    r.take('b'); // another caller has its own bucket
    now += 1000;
    r.take('a');
    expect(() => r.take('a')).toThrow(RateLimitedError);
    expect(() => new RateLimiter(0).take('x')).not.toThrow();
  });
  it('a concurrency gate refuses beyond its size and releases once', () => {
    const g = new ConcurrencyGate(2);
    const a = g.enter('uploads');
    g.enter('uploads');
    expect(() => g.enter('uploads')).toThrow(/too many concurrent uploads/);
    a();
    a();
    expect(g.inFlight).toBe(1);
    g.enter('uploads');
  });
});
