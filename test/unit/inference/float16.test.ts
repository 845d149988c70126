import {
  decodeFloat16,
  encodeFloat16,
  float16BitsToFloat32,
  float32ToFloat16Bits,
} from '../../../src/inference/float16.js';

describe('float16 encoder (IEEE 754 binary16, round to nearest even)', () => {
  it('encodes known values bit-exactly', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff],
      [65520, 0x7c00], // rounds up to Inf
      [1e6, 0x7c00],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // tie → even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // tie → even (up)
      [0.1, 0x2e66],
      [-3.25, 0xc280],
    ];
    for (const [v, bits] of cases) expect([v, float32ToFloat16Bits(v).toString(16)]).toEqual([v, bits.toString(16)]);
    expect(float32ToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(Number.isNaN(float16BitsToFloat32(0x7e00))).toBe(true);
  });

  it('round-trips every finite half value exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      expect(float32ToFloat16Bits(float16BitsToFloat32(h))).toBe(h === 0x8000 ? 0x8000 : h);
    }
  });

  it('decodes Uint16Array bits and Float16Array alike', () => {
    const bits = encodeFloat16([1.5, -0.25, 1000]);
    expect(Array.from(decodeFloat16(bits))).toEqual([1.5, -0.25, 1000]);
    const F16 = (globalThis as { Float16Array?: new (a: number[]) => ArrayLike<number> }).Float16Array;
    if (F16) expect(Array.from(decodeFloat16(new F16([1.5, -0.25])))).toEqual([1.5, -0.25]);
  });
});
