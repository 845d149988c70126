/**
 * Seeded mutations of small DICOM files for the parse + decode fuzz test: bit flips, truncation,
 * length-field corruption (element and item lengths), Basic Offset Table / fragment lengths that
 * lie, and random byte runs. Deterministic for a seed, so a failure can be replayed.
 */

/** mulberry32: small, fast, seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const Mutation = {
  BitFlip: 'bit-flip',
  Truncate: 'truncate',
  LengthField: 'length-field',
  FragmentLie: 'fragment-lie',
  RandomRun: 'random-run',
} as const;
export type Mutation = (typeof Mutation)[keyof typeof Mutation];
const KINDS = Object.values(Mutation);

const INTERESTING = [0, 1, 2, 0xff, 0xffff, 0x7fffffff, 0xfffffffe, 0xffffffff, 0x10000];

/** Offsets of Item tags (FFFE,E000) — fragments and sequence items. */
function itemOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i + 8 <= b.length; i++) {
    if (b[i] === 0xfe && b[i + 1] === 0xff && b[i + 2] === 0x00 && b[i + 3] === 0xe0) out.push(i);
  }
  return out;
}

export function mutate(src: Uint8Array, rnd: () => number): { data: Uint8Array; kind: Mutation } {
  const kind = KINDS[Math.floor(rnd() * KINDS.length)] ?? Mutation.BitFlip;
  const pick = (n: number) => Math.floor(rnd() * n);
  let b = new Uint8Array(src);
  const dv = () => new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (kind) {
    case Mutation.BitFlip: {
      const n = 1 + pick(8);
      for (let i = 0; i < n; i++) {
        const at = pick(b.length);
        b[at] = (b[at] ?? 0) ^ (1 << pick(8));
      }
      break;
    }
    case Mutation.Truncate:
      b = b.slice(0, pick(b.length));
      break;
    case Mutation.LengthField: {
      // Overwrite a 16- or 32-bit little-endian word after the 132-byte header with a hostile value.
      const at = 132 + pick(Math.max(1, b.length - 136));
      const v = INTERESTING[pick(INTERESTING.length)] ?? 0;
      if (at + 4 <= b.length) {
        if (rnd() < 0.5) dv().setUint16(at, v & 0xffff, true);
        else dv().setUint32(at, v >>> 0, true);
      }
      break;
    }
    case Mutation.FragmentLie: {
      const items = itemOffsets(b);
      const at = items[pick(Math.max(1, items.length))];
      if (at !== undefined && at + 12 <= b.length) {
        const v = INTERESTING[pick(INTERESTING.length)] ?? 0;
        // The item length, or (for the Basic Offset Table) its first offset.
        dv().setUint32(at + (rnd() < 0.5 ? 4 : 8), rnd() < 0.5 ? v >>> 0 : pick(b.length), true);
      } else {
        const p = pick(b.length);
        b[p] = (b[p] ?? 0) ^ 0xff;
      }
      break;
    }
    default: {
      const at = pick(b.length);
      const n = Math.min(b.length - at, 1 + pick(64));
      for (let i = 0; i < n; i++) b[at + i] = pick(256);
    }
  }
  return { data: b, kind };
}
