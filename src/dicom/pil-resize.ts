/**
 * PIL-compatible antialiased bilinear resize of 8-bit images (Pillow src/libImaging/Resample.c,
 * ImagingResample with the BILINEAR filter). The Mllama image processor resizes with PIL
 * (reference/model-contract.md §1.1), so to feed the model what it was trained on we must reproduce
 * PIL bit for bit: separable passes (horizontal first, then vertical), triangle filter whose support
 * grows with the downscale factor, coefficients normalised to sum 1 and converted to 22-bit fixed
 * point, and each pass rounded and clipped to uint8.
 */

/** Fixed-point precision of Resample.c for 8-bit images: 32 - 8 - 2. */
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

/** Triangle filter, support 1 (Resample.c bilinear_filter). */
function bilinearFilter(x: number): number {
  const ax = x < 0 ? -x : x;
  return ax < 1 ? 1 - ax : 0;
}

/** Resample.c bicubic_filter, a = -0.5 (support 2). */
function bicubicFilter(x: number): number {
  const a = -0.5;
  const ax = x < 0 ? -x : x;
  if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
  if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
  return 0;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

/** Resample.c lanczos_filter, a = 3 (support 3). */
function lanczosFilter(x: number): number {
  return x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

/** PIL resample ids as stored in preprocessor_config.json `resample` (PIL.Image.Resampling). */
export const PilFilter = { Lanczos: 1, Bilinear: 2, Bicubic: 3 } as const;
export type PilFilter = (typeof PilFilter)[keyof typeof PilFilter];

const FILTERS: Readonly<Record<PilFilter, { fn: (x: number) => number; support: number }>> = {
  [PilFilter.Lanczos]: { fn: lanczosFilter, support: 3 },
  [PilFilter.Bilinear]: { fn: bilinearFilter, support: 1 },
  [PilFilter.Bicubic]: { fn: bicubicFilter, support: 2 },
};

export function isPilFilter(v: unknown): v is PilFilter {
  return v === PilFilter.Lanczos || v === PilFilter.Bilinear || v === PilFilter.Bicubic;
}

interface Coeffs {
  /** Coefficients per kernel slot, `ksize` per output sample, 22-bit fixed point. */
  readonly kk: Int32Array;
  /** [xmin, count] per output sample. */
  readonly bounds: Int32Array;
  readonly ksize: number;
}

/** Resample.c precompute_coeffs + normalize_coeffs_8bpc, for box [0, inSize). */
function precomputeCoeffs(inSize: number, outSize: number, filter: PilFilter): Coeffs {
  const { fn, support: base } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = base * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    // C's (int) cast truncates toward zero.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const v = fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < ksize; x++) {
      let v = x < xmax ? (w[x] ?? 0) : 0;
      if (x < xmax && ww !== 0) v /= ww;
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kk, bounds, ksize };
}

/** Resample.c clip8: fixed-point accumulator → uint8, clipping to 0..255. */
function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : Math.min(v, 255);
}

/**
 * Resize an interleaved uint8 image (`channels` samples per pixel) to newW×newH exactly as
 * PIL `Image.resize((newW, newH), filter)` does (reducing_gap None); BILINEAR unless told otherwise
 * (BICUBIC and LANCZOS share the same separable fixed-point machinery in Resample.c).
 */
export function resizeBilinearPil(
  src: Uint8Array,
  w: number,
  h: number,
  channels: number,
  newW: number,
  newH: number,
  filter: PilFilter = PilFilter.Bilinear,
): Uint8Array {
  if (!Number.isInteger(w) || !Number.isInteger(h) || !Number.isInteger(newW) || !Number.isInteger(newH)) {
    throw new RangeError('resizeBilinearPil: sizes must be integers');
  }
  if (w < 1 || h < 1 || newW < 1 || newH < 1 || channels < 1)
    throw new RangeError('resizeBilinearPil: sizes must be >= 1');
  if (src.length < w * h * channels) throw new RangeError('resizeBilinearPil: source buffer too small');
  const needH = newW !== w;
  const needV = newH !== h;
  if (!needH && !needV) return src.slice(0, w * h * channels);

  const vert = precomputeCoeffs(h, newH, filter);
  // Only the source rows the vertical pass reads are resampled horizontally (ImagingResampleInner).
  const yFirst = vert.bounds[0] ?? 0;
  const yLast = (vert.bounds[newH * 2 - 2] ?? 0) + (vert.bounds[newH * 2 - 1] ?? 0);

  let cur = src;
  let curW = w;
  let rowOffset = 0;
  if (needH) {
    const hor = precomputeCoeffs(w, newW, filter);
    const rows = yLast - yFirst;
    const out = new Uint8Array(newW * rows * channels);
    for (let yy = 0; yy < rows; yy++) {
      const inRow = (yy + yFirst) * w * channels;
      for (let xx = 0; xx < newW; xx++) {
        const xmin = hor.bounds[xx * 2] ?? 0;
        const xmax = hor.bounds[xx * 2 + 1] ?? 0;
        const k = xx * hor.ksize;
        for (let c = 0; c < channels; c++) {
          let ss = HALF;
          for (let x = 0; x < xmax; x++) ss += (src[inRow + (x + xmin) * channels + c] ?? 0) * (hor.kk[k + x] ?? 0);
          out[(yy * newW + xx) * channels + c] = clip8(ss);
        }
      }
    }
    cur = out;
    curW = newW;
    rowOffset = yFirst;
  }
  if (!needV) return cur;
  const out = new Uint8Array(curW * newH * channels);
  for (let yy = 0; yy < newH; yy++) {
    const ymin = (vert.bounds[yy * 2] ?? 0) - rowOffset;
    const ymax = vert.bounds[yy * 2 + 1] ?? 0;
    const k = yy * vert.ksize;
    for (let xx = 0; xx < curW; xx++) {
      for (let c = 0; c < channels; c++) {
        let ss = HALF;
        for (let y = 0; y < ymax; y++)
          ss += (cur[((y + ymin) * curW + xx) * channels + c] ?? 0) * (vert.kk[k + y] ?? 0);
        out[(yy * curW + xx) * channels + c] = clip8(ss);
      }
    }
  }
  return out;
}
