import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * Request limits of the HTTP endpoints (issue 12, Access), free of the HTTP framework:
 * - a request rate per caller (token bucket: `perMinute` requests, refilled evenly), over it 429
 *   Too Many Requests with Retry-After (RFC 6585 §4);
 * - concurrent STOW-RS uploads, over it 503 with Retry-After (RFC 9110 §15.6.4), as a server
 *   that is busy for a while answers.
 * Body sizes per route are the routers' own (STOW-RS `ingest.maxRequestBytes`, 413).
 */
export class RateLimitedError extends RadScribeError {
  override name = 'RateLimitedError';
  constructor(readonly retryAfterSeconds: number) {
    super(ErrorCode.RateLimited, 'too many requests for this token; slow down');
  }
}

export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one request for `key`; throws RateLimitedError when its bucket is empty. */
  take(key: string): void {
    if (this.perMinute <= 0) return;
    const t = this.now();
    const rate = this.perMinute / 60_000;
    const b = this.#buckets.get(key) ?? { tokens: this.perMinute, at: t };
    b.tokens = Math.min(this.perMinute, b.tokens + (t - b.at) * rate);
    b.at = t;
    this.#buckets.set(key, b);
    if (b.tokens < 1) throw new RateLimitedError(Math.max(1, Math.ceil((1 - b.tokens) / rate / 1000)));
    b.tokens -= 1;
    // Callers are few (tokens); forget full buckets now and then so the map stays small.
    if (this.#buckets.size > 10_000)
      for (const [k, v] of this.#buckets) if (v.tokens >= this.perMinute - 1) this.#buckets.delete(k);
  }
}

export class ConcurrencyGate {
  #inFlight = 0;
  constructor(private readonly max: number) {}

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Enters, returning the release function (idempotent); throws OutOfResources (503) when full. */
  enter(what: string): () => void {
    if (this.max > 0 && this.#inFlight >= this.max)
      throw new RadScribeError(ErrorCode.OutOfResources, `too many concurrent ${what}; try again later`);
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
    };
  }
}
