/**
 * Seeded PRNG shared by seeded sampling (sampling.ts) and the fixture generator (tools/make-fixture-model.ts).
 * mulberry32: 32-bit state, fast, and bit-identical on every platform because it uses only Math.imul and
 * unsigned shifts, which is what "byte-identical on every run" needs.
 */
export class Mulberry32 {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal via Box–Muller (one value per call; the second is discarded for simplicity). */
  normal(): number {
    const u1 = Math.max(this.next(), 1e-12);
    const u2 = this.next();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}
