import { AuthFailureThrottle, ConcurrencyGate, RateLimitedError, RateLimiter } from '../../../src/http/limits.js';

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
  it('blocks an address after its failure budget, counts what it refused, and lets it back in', () => {
    let now = 0;
    const t = new AuthFailureThrottle(3, () => now);
    t.check('10.0.0.9'); // unknown addresses pass without a bucket
    expect([t.fail('10.0.0.9'), t.fail('10.0.0.9')]).toEqual([
      { blocked: false, refusedSince: 0 },
      { blocked: false, refusedSince: 0 },
    ]);
    t.check('10.0.0.9');
    // The third failure in the minute empties the bucket: that one is the start of the block.
    expect(t.fail('10.0.0.9')).toEqual({ blocked: true, refusedSince: 0 });
    let err: unknown;
    for (let i = 0; i < 5; i++) {
      try {
        t.check('10.0.0.9');
      } catch (e) {
        err = e;
      }
    }
    expect(err).toBeInstanceOf(RateLimitedError);
    expect((err as RateLimitedError).retryAfterSeconds).toBe(20); // one failure's worth at 3/min
    expect((err as Error).message).toMatch(/failed authentications from this address/);
    t.check('10.0.0.10'); // another address is not affected
    now += 20_000; // one failure refilled
    t.check('10.0.0.9');
    // The next failure is audited again and carries the five refused in between; blocked again.
    expect(t.fail('10.0.0.9')).toEqual({ blocked: true, refusedSince: 5 });
    expect(t.fail('10.0.0.9').refusedSince).toBe(0);
    expect(() => new AuthFailureThrottle(0).check('x')).not.toThrow();
    expect(new AuthFailureThrottle(0).fail('x')).toEqual({ blocked: false, refusedSince: 0 });
  });
});
