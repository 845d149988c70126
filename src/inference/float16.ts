import * as ort from 'onnxruntime-node';

/**
 * IEEE 754 binary16 conversion for graphs that declare float16 inputs/outputs (model-contract §11.2:
 * "dtype (fp16 vs fp32 KV) from inputMetadata"). onnxruntime-node takes float16 data as a Uint16Array of
 * bit patterns and may return either a Uint16Array or a Float16Array (Node 24 has one), so both are read.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One float32 → binary16 bit pattern, round-to-nearest-even, with subnormals, ±Inf and NaN. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN (quiet)
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit 1 in, then round to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  const rest = mant & 0x1fff;
  let m = mant >>> 13;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1) === 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function encodeFloat16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = float32ToFloat16Bits(src[i] as number);
  return out;
}

function tag(v: unknown): string {
  return Object.prototype.toString.call(v);
}

/** float16 data as ORT hands it out (Uint16Array bits or Float16Array) → Float32Array. */
export function decodeFloat16(data: unknown): Float32Array {
  if (tag(data) === '[object Uint16Array]') {
    const bits = data as Uint16Array;
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i] as number);
    return out;
  }
  return Float32Array.from(data as ArrayLike<number>);
}

/** Any float tensor's values as float32 (a copy for float16; the tensor's own array for float32). */
export function floatData(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return decodeFloat16(t.data);
  throw new TypeError(`expected a float tensor, got ${t.type}`);
}

/** float32 values → a tensor of the declared float dtype. */
export function floatTensor(type: 'float32' | 'float16', data: Float32Array, dims: readonly number[]): ort.Tensor {
  return type === 'float32'
    ? new ort.Tensor('float32', data, dims)
    : new ort.Tensor('float16', encodeFloat16(data), dims);
}

/**
 * Returns `t` when it already has dtype `type`, else a converted copy (the caller then owns both).
 * Used where one graph's output feeds another graph that declares the other float type.
 */
export function castFloat(t: ort.Tensor, type: 'float32' | 'float16'): ort.Tensor {
  if (t.type === type) return t;
  return floatTensor(type, floatData(t), t.dims);
}

/**
 * onnxruntime-node 1.30 on Node 24: onnxruntime-common stores float16 data as a Float16Array whenever the
 * global exists (Node 24 has it), but the native binding only accepts a Uint16Array for float16 ("Tensor.data
 * must be a typed array (4 or Float16Array) for float16 tensors, but got typed array (0)"). Every float16
 * feed, including present.* tensors fed back as past_key_values, is therefore re-viewed as Uint16Array bits
 * (same buffer, no copy) just before run().
 */
export function nativeFeeds(feeds: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
  for (const t of Object.values(feeds)) {
    if (t.type !== 'float16') continue;
    const d = t.data as unknown as { buffer: ArrayBuffer; byteOffset: number; length: number };
    if (tag(d) === '[object Uint16Array]') continue;
    (t as unknown as { cpuData: Uint16Array }).cpuData = new Uint16Array(d.buffer, d.byteOffset, d.length);
  }
  return feeds;
}
