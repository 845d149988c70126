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
  constructor(
    readonly retryAfterSeconds: number,
    message = 'too many requests for this token; slow down',
  ) {
    super(ErrorCode.RateLimited, message);
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

/**
 * Failed authentications per network address (issue 12, Access: "login or token use and refusal"
 * audited, limits with the standard's status). Every failure takes one token from the address's
 * bucket (`perMinute`, refilled evenly); an address with an empty bucket is refused with 429 and
 * Retry-After before any credential is looked up, and its refusals are no longer audited one by
 * one: the failure that empties the bucket is audited as the start of the block, and the next
 * audited failure after it carries the number of requests refused in between. So a flood of bad
 * credentials costs neither database lookups nor one audit row per request, and the audit trail
 * still shows it (PS3.15 A.5.3.13 User Authentication, outcome serious failure).
 * A valid token from a blocked address waits too, as with any address-based block (fail2ban): the
 * budget is generous, and a client that loops on a wrong token is misconfigured.
 */
export class AuthFailureThrottle {
  readonly #addresses = new Map<string, { tokens: number; at: number; refused: number }>();
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  #bucket(address: string): { tokens: number; at: number; refused: number } {
    const t = this.now();
    const b = this.#addresses.get(address) ?? { tokens: this.perMinute, at: t, refused: 0 };
    b.tokens = Math.min(this.perMinute, b.tokens + ((t - b.at) * this.perMinute) / 60_000);
    b.at = t;
    this.#addresses.set(address, b);
    return b;
  }

  /** Throws RateLimitedError while `address` is blocked (and counts the refusal). */
  check(address: string): void {
    if (this.perMinute <= 0 || !this.#addresses.has(address)) return;
    const b = this.#bucket(address);
    if (b.tokens >= 1) return;
    b.refused++;
    throw new RateLimitedError(
      Math.max(1, Math.ceil(((1 - b.tokens) * 60) / this.perMinute)),
      'too many failed authentications from this address; try again later',
    );
  }

  /**
   * Records one failure of `address`. `blocked`: this failure emptied the bucket (audit it as the
   * start of a block); `refusedSince`: requests refused while it was blocked, since the last call.
   */
  fail(address: string): { blocked: boolean; refusedSince: number } {
    if (this.perMinute <= 0) return { blocked: false, refusedSince: 0 };
    const b = this.#bucket(address);
    const refusedSince = b.refused;
    b.refused = 0;
    b.tokens = Math.max(0, b.tokens - 1);
    // Forget addresses whose bucket is full again, now and then, so the map stays bounded.
    if (this.#addresses.size > 10_000)
      for (const [k, v] of this.#addresses)
        if (v.tokens >= this.perMinute - 1 && v.refused === 0) this.#addresses.delete(k);
    return { blocked: b.tokens < 1, refusedSince };
  }
}
