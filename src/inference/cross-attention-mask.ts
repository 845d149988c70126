/**
 * cross_attention_mask for Mllama (model-contract §2.3; HF processing_mllama.py
 * `get_cross_attention_token_mask` + `convert_sparse_cross_attention_mask_to_dense`).
 * Raw int64 [B=1, S, imgs, maxTiles]; the ×1601 expansion and the additive mask live inside the decoder graph.
 */

/** Per image: [start, end) token span that may see it. Consecutive image tokens share the later range. */
export function imageTokenSpans(ids: readonly number[], imageTokenId: number): Array<[number, number]> {
  const locs: number[] = [];
  ids.forEach((id, i) => {
    if (id === imageTokenId) locs.push(i);
  });
  const spans: Array<[number, number]> = locs.map((loc, j) => [loc, locs[j + 1] ?? ids.length]);
  let lastEnd = ids.length;
  for (let j = spans.length - 1; j >= 0; j--) {
    const span = spans[j] as [number, number];
    if (span[0] === span[1] - 1) span[1] = lastEnd;
    lastEnd = span[1];
  }
  return spans;
}

export interface CrossAttentionMask {
  data: BigInt64Array;
  /** [1, S, imgs, maxTiles] */
  dims: [number, number, number, number];
}

/** mask[0,t,i,k] = 1 when token t lies in image i's span and tile k < numTiles[i] (real, not padded, tiles). */
export function buildCrossAttentionMask(
  ids: readonly number[],
  imageTokenId: number,
  numTiles: readonly number[],
  maxTiles: number,
): CrossAttentionMask {
  const spans = imageTokenSpans(ids, imageTokenId);
  if (spans.length !== numTiles.length) {
    throw new RangeError(`prompt has ${spans.length} image tokens but ${numTiles.length} images were given`);
  }
  const S = ids.length;
  const imgs = numTiles.length;
  const data = new BigInt64Array(S * imgs * maxTiles);
  spans.forEach(([start, end], i) => {
    const n = numTiles[i] ?? 0;
    for (let t = start; t < end; t++) {
      for (let k = 0; k < Math.min(n, maxTiles); k++) data[(t * imgs + i) * maxTiles + k] = 1n;
    }
  });
  return { data, dims: [1, S, imgs, maxTiles] };
}

/**
 * Mask rows for decode steps: HF `_update_model_kwargs_for_generation` appends the last row again for each
 * new token, so a generated token sees exactly what the last prompt token saw.
 */
export function lastRow(mask: CrossAttentionMask): CrossAttentionMask {
  const [, S, imgs, tiles] = mask.dims;
  const width = imgs * tiles;
  return { data: mask.data.slice((S - 1) * width, S * width), dims: [1, 1, imgs, tiles] };
}
