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

interface Coeffs {
  /** Coefficients per kernel slot, `ksize` per output sample, 22-bit fixed point. */
  readonly kk: Int32Array;
  /** [xmin, count] per output sample. */
  readonly bounds: Int32Array;
  readonly ksize: number;
}

/** Resample.c precompute_coeffs + normalize_coeffs_8bpc, for box [0, inSize). */
function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale;
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
      const v = bilinearFilter((x + xmin - center + 0.5) * ss);
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
 * PIL `Image.resize((newW, newH), Image.BILINEAR)` does (reducing_gap None).
 */
export function resizeBilinearPil(
  src: Uint8Array,
  w: number,
  h: number,
  channels: number,
  newW: number,
  newH: number,
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

  const vert = precomputeCoeffs(h, newH);
  // Only the source rows the vertical pass reads are resampled horizontally (ImagingResampleInner).
  const yFirst = vert.bounds[0] ?? 0;
  const yLast = (vert.bounds[newH * 2 - 2] ?? 0) + (vert.bounds[newH * 2 - 1] ?? 0);

  let cur = src;
  let curW = w;
  let rowOffset = 0;
  if (needH) {
    const hor = precomputeCoeffs(w, newW);
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
