import { DType, GraphBuilder, type GraphBuilderOptions, type IoSpec } from './graph-builder.js';
import { FLOAT32_MIN, layerNorm, linear, quickGelu, rmsNorm, silu, tanhGate, type WeightSource } from './layers.js';

/**
 * The three transformers.js-layout graphs (model-contract §4, §11.1) of a tiny Mllama. Geometry is the real
 * one (tile 560, patch 14 → 1600 patches + CLS = 1601 tokens per tile, model-contract §1.1); widths are tiny.
 * Structure follows HF transformers `models/mllama/modeling_mllama.py` in miniature (see each builder).
 */

export interface TinyTextConfig {
  hiddenSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  numHiddenLayers: number;
  crossAttentionLayers: readonly number[];
  vocabSize: number;
  /** embed_tokens rows: vocab + 8 so `<|image|>` (= vocab_size) has a learned row (model-contract §2.1). */
  embedRows: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
}

export interface TinyVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  maxNumTiles: number;
  /** Aspect ratio ids are 1..8 (0 = padded image slot), model-contract §1.1. */
  maxAspectRatioId: number;
  normEps: number;
}

/** Encoded model bytes plus the I/O it declares (copied into manifest.json). */
export interface BuiltGraph {
  bytes: Uint8Array;
  io: { inputs: IoSpec[]; outputs: IoSpec[] };
}

function built(g: GraphBuilder, doc: string): BuiltGraph {
  const io = g.ioSpec();
  return { bytes: g.encode(doc), io };
}

export function tokensPerTile(v: TinyVisionConfig): number {
  return (v.imageSize / v.patchSize) ** 2 + 1;
}

export function selfAttentionLayers(t: TinyTextConfig): number[] {
  return Array.from({ length: t.numHiddenLayers }, (_, i) => i).filter((i) => !t.crossAttentionLayers.includes(i));
}

/**
 * vision_encoder: conv patch embed (no bias) → CLS → gated positional embedding → gated pre-tile embedding
 * gathered by aspect_ratio_id → pre-LN → a cross-tile mixing step that averages only tiles with
 * aspect_ratio_mask=1 (stand-in for the 32-layer joint-attention encoder whose mask comes from
 * aspect_ratio_mask, model-contract §3) → MLP block → post-LN → multi_modal_projector → [N·imgs·tiles, 1601, H].
 */
export function buildVisionEncoder(
  v: TinyVisionConfig,
  textHidden: number,
  w: WeightSource,
  opts: GraphBuilderOptions = {},
): BuiltGraph {
  const g = new GraphBuilder('mllama_vision_encoder', opts);
  const D = v.hiddenSize;
  const T = v.maxNumTiles;
  const side = v.imageSize / v.patchSize;
  const nTok = tokensPerTile(v);
  const pixel = g.input('pixel_values', DType.FLOAT, [
    'batch',
    'num_images',
    T,
    v.numChannels,
    v.imageSize,
    v.imageSize,
  ]);
  const arIds = g.input('aspect_ratio_ids', DType.INT64, ['batch', 'num_images']);
  const arMask = g.input('aspect_ratio_mask', DType.INT64, ['batch', 'num_images', T]);

  const x = g.op('Reshape', [pixel, g.ints([-1, v.numChannels, v.imageSize, v.imageSize])]);
  const convW = g.weight(
    'patch_embedding.weight',
    [D, v.numChannels, v.patchSize, v.patchSize],
    w.normal(D * v.numChannels * v.patchSize ** 2, 1 / Math.sqrt(v.numChannels * v.patchSize ** 2)),
  );
  const conv = g.op('Conv', [x, convW], {
    kernel_shape: [v.patchSize, v.patchSize],
    strides: [v.patchSize, v.patchSize],
  });
  const patches = g.op('Transpose', [g.op('Reshape', [conv, g.ints([0, D, side * side])])], { perm: [0, 2, 1] });

  const n = g.op('Slice', [g.op('Shape', [patches]), g.ints([0]), g.ints([1])]);
  const cls = g.weight('class_embedding', [1, 1, D], w.normal(D, 1));
  const clsN = g.op('Expand', [cls, g.op('Concat', [n, g.ints([1, D])], { axis: 0 })]);
  let h = g.op('Concat', [clsN, patches], { axis: 1 });

  const pos = g.weight('gated_positional_embedding.embedding', [nTok, D], w.normal(nTok * D, 1));
  h = g.op('Add', [h, tanhGate(g, w, 'gated_positional_embedding.gate', pos)]);

  // MllamaPrecomputedAspectRatioEmbedding: table [max_aspect_ratio_id+1, max_tiles·D] gathered by id.
  const preTile = g.weight(
    'pre_tile_positional_embedding.embedding',
    [v.maxAspectRatioId + 1, T * D],
    w.normal((v.maxAspectRatioId + 1) * T * D, 1),
  );
  const tileEmb = g.op('Reshape', [g.op('Gather', [preTile, arIds], { axis: 0 }), g.ints([-1, 1, D])]);
  h = g.op('Add', [h, tanhGate(g, w, 'pre_tile_positional_embedding.gate', tileEmb)]);
  h = layerNorm(g, w, 'layernorm_pre', h, D, v.normEps);

  // Cross-tile mixing restricted to real tiles: padded tiles never influence real ones.
  const tileMean = g.op('Reshape', [g.op('ReduceMean', [h], { axes: [1], keepdims: 0 }), g.ints([-1, T, D])]);
  const m = g.op('Reshape', [g.op('Cast', [arMask], { to: DType.FLOAT }), g.ints([-1, T, 1])]);
  const axis1 = g.ints([1]);
  const sum = g.op('ReduceSum', [g.op('Mul', [tileMean, m]), axis1], { keepdims: 1 });
  const count = g.op('Max', [g.op('ReduceSum', [m, axis1], { keepdims: 1 }), g.floats([1])]);
  const mixed = linear(g, w, 'tile_mixer', g.op('Div', [sum, count]), D, D);
  const mixedPerTile = g.op('Reshape', [g.op('Expand', [mixed, g.ints([1, T, 1])]), g.ints([-1, 1, D])]);
  h = g.op('Add', [h, tanhGate(g, w, 'tile_mixer.gate', mixedPerTile)]);

  const mlpIn = layerNorm(g, w, 'encoder.layer0.post_attention_layernorm', h, D, v.normEps);
  const fc1 = quickGelu(g, linear(g, w, 'encoder.layer0.mlp.fc1', mlpIn, D, v.intermediateSize, true));
  h = g.op('Add', [h, linear(g, w, 'encoder.layer0.mlp.fc2', fc1, v.intermediateSize, D, true)]);
  h = layerNorm(g, w, 'layernorm_post', h, D, v.normEps);

  const projected = linear(g, w, 'multi_modal_projector', h, D, textHidden, true);
  g.op('Identity', [projected], {}, 'cross_attention_states');
  g.output('cross_attention_states', DType.FLOAT, ['num_tiles_total', nTok, textHidden]);
  return built(g, 'RadScribe test fixture — output is meaningless. Tiny random-weight Mllama vision encoder.');
}

/** embed_tokens: a Gather over [vocab+8, H] (model-contract §2.1: `<|image|>` has its own row). */
export function buildEmbedTokens(
  t: Pick<TinyTextConfig, 'embedRows' | 'hiddenSize'>,
  w: WeightSource,
  opts: GraphBuilderOptions = {},
  graphName = 'mllama_embed_tokens',
): BuiltGraph {
  const g = new GraphBuilder(graphName, opts);
  const ids = g.input('input_ids', DType.INT64, ['batch', 'sequence_length']);
  const table = g.weight('embed_tokens.weight', [t.embedRows, t.hiddenSize], w.normal(t.embedRows * t.hiddenSize, 1));
  g.op('Gather', [table, ids], { axis: 0 }, 'inputs_embeds');
  g.output('inputs_embeds', DType.FLOAT, ['batch', 'sequence_length', t.hiddenSize]);
  return built(g, 'RadScribe test fixture — output is meaningless. Tiny random-weight embed_tokens.');
}

/** Llama rotary tables cos/sin [maxPos, headDim] with emb = cat(freqs, freqs) (HF `rotate_half` convention). */
export function ropeTables(t: TinyTextConfig): { cos: Float32Array; sin: Float32Array } {
  const half = t.headDim / 2;
  const cos = new Float32Array(t.maxPositionEmbeddings * t.headDim);
  const sin = new Float32Array(t.maxPositionEmbeddings * t.headDim);
  for (let p = 0; p < t.maxPositionEmbeddings; p++) {
    for (let i = 0; i < half; i++) {
      const invFreq = 1 / t.ropeTheta ** ((2 * i) / t.headDim);
      const a = p * invFreq;
      for (const j of [i, i + half]) {
        cos[p * t.headDim + j] = Math.cos(a);
        sin[p * t.headDim + j] = Math.sin(a);
      }
    }
  }
  return { cos, sin };
}

export interface DecoderShared {
  batch: string;
  allowedSelf: string;
  allowedCross: string;
  fullTextRow: string;
  cos: string;
  sin: string;
  crossStates: string;
}

/** [B,S,heads·D] → [B,heads,S,D]. */
function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  return g.op('Transpose', [g.op('Reshape', [x, g.ints([0, 0, heads, headDim])])], { perm: [0, 2, 1, 3] });
}

function applyRope(g: GraphBuilder, t: TinyTextConfig, x: string, cos: string, sin: string): string {
  const half = t.headDim / 2;
  const x1 = g.op('Slice', [x, g.ints([0]), g.ints([half]), g.ints([-1])]);
  const x2 = g.op('Slice', [x, g.ints([half]), g.ints([t.headDim]), g.ints([-1])]);
  const rot = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rot, sin])]);
}

/**
 * Grouped-query attention without materializing repeated K/V: q [B,H,S,D] is viewed as [B,kvH,rep,S,D]
 * (HF `repeat_kv` maps head h to kv head h // rep) and K/V [B,kvH,T,D] as [B,kvH,1,T,D], so MatMul broadcasts.
 * `allowed` is a bool mask broadcastable to [B,kvH,rep,S,T]; Where (not an additive min) keeps fully masked
 * rows finite: they become a uniform softmax instead of NaN (model-contract §5.7).
 */
function attention(g: GraphBuilder, t: TinyTextConfig, q: string, k: string, v: string, allowed: string): string {
  const rep = t.numAttentionHeads / t.numKeyValueHeads;
  const q5 = g.op('Reshape', [q, g.ints([0, t.numKeyValueHeads, rep, -1, t.headDim])]);
  const axis2 = g.ints([2]);
  const k5 = g.op('Unsqueeze', [k, axis2]);
  const v5 = g.op('Unsqueeze', [v, axis2]);
  const scores = g.op('Mul', [
    g.op('MatMul', [q5, g.op('Transpose', [k5], { perm: [0, 1, 2, 4, 3] })]),
    g.floats([1 / Math.sqrt(t.headDim)]),
  ]);
  const masked = g.op('Where', [allowed, scores, g.floats([FLOAT32_MIN])]);
  const out = g.op('MatMul', [g.op('Softmax', [masked], { axis: -1 }), v5]);
  const merged = g.op('Transpose', [g.op('Reshape', [out, g.ints([0, t.numAttentionHeads, -1, t.headDim])])], {
    perm: [0, 2, 1, 3],
  });
  return g.op('Reshape', [merged, g.ints([0, 0, t.numAttentionHeads * t.headDim])]);
}

function mlp(g: GraphBuilder, w: WeightSource, t: TinyTextConfig, name: string, h: string): string {
  const gate = silu(g, linear(g, w, `${name}.gate_proj`, h, t.hiddenSize, t.intermediateSize));
  const up = linear(g, w, `${name}.up_proj`, h, t.hiddenSize, t.intermediateSize);
  return linear(g, w, `${name}.down_proj`, g.op('Mul', [gate, up]), t.intermediateSize, t.hiddenSize);
}

/** MllamaSelfAttentionDecoderLayer: pre-RMSNorm, RoPE, GQA with past/present KV, SwiGLU MLP. */
export function selfLayer(
  g: GraphBuilder,
  w: WeightSource,
  t: TinyTextConfig,
  s: DecoderShared,
  i: number,
  x: string,
): string {
  const p = `layers.${i}`;
  const h = rmsNorm(g, w, `${p}.input_layernorm`, x, t.hiddenSize, t.rmsNormEps);
  const qDim = t.numAttentionHeads * t.headDim;
  const kvDim = t.numKeyValueHeads * t.headDim;
  const q = applyRope(
    g,
    t,
    splitHeads(g, linear(g, w, `${p}.self_attn.q_proj`, h, t.hiddenSize, qDim), t.numAttentionHeads, t.headDim),
    s.cos,
    s.sin,
  );
  const k = applyRope(
    g,
    t,
    splitHeads(g, linear(g, w, `${p}.self_attn.k_proj`, h, t.hiddenSize, kvDim), t.numKeyValueHeads, t.headDim),
    s.cos,
    s.sin,
  );
  const v = splitHeads(g, linear(g, w, `${p}.self_attn.v_proj`, h, t.hiddenSize, kvDim), t.numKeyValueHeads, t.headDim);
  const kvDims = ['batch', t.numKeyValueHeads, 'past_sequence_length', t.headDim];
  const pastK = g.input(`past_key_values.${i}.key`, DType.FLOAT, kvDims);
  const pastV = g.input(`past_key_values.${i}.value`, DType.FLOAT, kvDims);
  const presentK = g.op('Concat', [pastK, k], { axis: 2 }, `present.${i}.key`);
  const presentV = g.op('Concat', [pastV, v], { axis: 2 }, `present.${i}.value`);
  const presentDims = ['batch', t.numKeyValueHeads, 'total_sequence_length', t.headDim];
  g.output(presentK, DType.FLOAT, presentDims);
  g.output(presentV, DType.FLOAT, presentDims);
  const attn = attention(g, t, q, presentK, presentV, s.allowedSelf);
  const x2 = g.op('Add', [x, linear(g, w, `${p}.self_attn.o_proj`, attn, qDim, t.hiddenSize)]);
  const h2 = rmsNorm(g, w, `${p}.post_attention_layernorm`, x2, t.hiddenSize, t.rmsNormEps);
  return g.op('Add', [x2, mlp(g, w, t, `${p}.mlp`, h2)]);
}

/**
 * MllamaCrossAttentionDecoderLayer: q_norm/k_norm over head_dim, no RoPE, tanh-gated attention and MLP; only
 * the MLP output is multiplied by full_text_row_masked_out_mask, as in HF (transformers #39379). Cross K/V are
 * recomputed from cross_attention_states on every step (v1, model-contract §11.7).
 */
function crossLayer(
  g: GraphBuilder,
  w: WeightSource,
  t: TinyTextConfig,
  s: DecoderShared,
  i: number,
  x: string,
): string {
  const p = `layers.${i}`;
  const qDim = t.numAttentionHeads * t.headDim;
  const kvDim = t.numKeyValueHeads * t.headDim;
  const h = rmsNorm(g, w, `${p}.input_layernorm`, x, t.hiddenSize, t.rmsNormEps);
  const q0 = splitHeads(
    g,
    linear(g, w, `${p}.cross_attn.q_proj`, h, t.hiddenSize, qDim),
    t.numAttentionHeads,
    t.headDim,
  );
  const q = rmsNorm(g, w, `${p}.cross_attn.q_norm`, q0, t.headDim, t.rmsNormEps);
  // HF: k_proj(states).view(bsz, -1, kvH, D): all images and tiles of one sample form one key sequence.
  const kvShape = g.op('Concat', [s.batch, g.ints([-1, t.numKeyValueHeads, t.headDim])], { axis: 0 });
  const toHeads = (y: string) => g.op('Transpose', [g.op('Reshape', [y, kvShape])], { perm: [0, 2, 1, 3] });
  const k0 = toHeads(linear(g, w, `${p}.cross_attn.k_proj`, s.crossStates, t.hiddenSize, kvDim));
  const k = rmsNorm(g, w, `${p}.cross_attn.k_norm`, k0, t.headDim, t.rmsNormEps);
  const v = toHeads(linear(g, w, `${p}.cross_attn.v_proj`, s.crossStates, t.hiddenSize, kvDim));
  // HF `MllamaCrossAttentionDecoderLayer` (modeling_mllama.py; transformers #39379): the attention output is NOT
  // multiplied by full_text_row_masked_out_mask, so a row with no visible tile (text before <|image|>) keeps the
  // output of its uniform attention over every tile, padded ones included. Meta's reference
  // (llama-models `CrossAttention`: `output * full_text_row_masked_out_mask`) zeroes it; a real export goes
  // through HF layers and the seed's LoRA was trained with HF code, so the fixture follows HF.
  const attn = linear(g, w, `${p}.cross_attn.o_proj`, attention(g, t, q, k, v, s.allowedCross), qDim, t.hiddenSize);
  const x2 = g.op('Add', [x, tanhGate(g, w, `${p}.cross_attn_attn_gate`, attn)]);
  const h2 = rmsNorm(g, w, `${p}.post_attention_layernorm`, x2, t.hiddenSize, t.rmsNormEps);
  const m = g.op('Mul', [mlp(g, w, t, `${p}.mlp`, h2), s.fullTextRow]);
  return g.op('Add', [x2, tanhGate(g, w, `${p}.cross_attn_mlp_gate`, m)]);
}

/**
 * Shared decoder prologue: batch size, the causal+padding self-attention mask, and RoPE cos/sin gathered
 * by position_ids (so decode steps use past + i, model-contract §11.4).
 */
export function decoderPrologue(
  g: GraphBuilder,
  t: TinyTextConfig,
  embeds: string,
  attnMask: string,
  posIds: string,
): Pick<DecoderShared, 'batch' | 'allowedSelf' | 'cos' | 'sin'> {
  const shape = g.op('Shape', [embeds]);
  const batch = g.op('Slice', [shape, g.ints([0]), g.ints([1])]);
  const seq = g.op('Slice', [shape, g.ints([1]), g.ints([2])]);
  const total = g.op('Slice', [g.op('Shape', [attnMask]), g.ints([1]), g.ints([2])]);
  const axis0 = g.ints([0]);
  const scalar = (x: string) => g.op('Squeeze', [x, axis0]);
  const past = g.op('Sub', [total, seq]);
  const one = g.ints([1], []);
  const qPos = g.op('Range', [scalar(past), scalar(total), one]);
  const kPos = g.op('Range', [g.ints([0], []), scalar(total), one]);
  // Causal: key position ≤ query position (past + i); padding: attention_mask[b, t] == 1.
  const causal = g.op('LessOrEqual', [g.op('Unsqueeze', [kPos, axis0]), g.op('Unsqueeze', [qPos, g.ints([1])])]);
  const pad = g.op('Unsqueeze', [g.op('Cast', [attnMask], { to: DType.BOOL }), g.ints([1, 2, 3])]);
  const allowedSelf = g.op('And', [causal, pad]);

  const rope = ropeTables(t);
  const cosT = g.weight('rotary_emb.cos_cached', [t.maxPositionEmbeddings, t.headDim], rope.cos);
  const sinT = g.weight('rotary_emb.sin_cached', [t.maxPositionEmbeddings, t.headDim], rope.sin);
  const axis1 = g.ints([1]);
  const cos = g.op('Unsqueeze', [g.op('Gather', [cosT, posIds], { axis: 0 }), axis1]);
  const sin = g.op('Unsqueeze', [g.op('Gather', [sinT, posIds], { axis: 0 }), axis1]);
  return { batch, allowedSelf, cos, sin };
}

/**
 * decoder_model_merged: inputs_embeds, attention_mask, position_ids, cross_attention_states, raw
 * cross_attention_mask [B,S,imgs,tiles] (expanded in-graph, model-contract §5.2c) and past KV of the self
 * layers → logits [B,S,V] and present KV.
 */
export function buildDecoder(
  t: TinyTextConfig,
  v: TinyVisionConfig,
  w: WeightSource,
  opts: GraphBuilderOptions = {},
): BuiltGraph {
  const g = new GraphBuilder('mllama_text_decoder', opts);
  const nTok = tokensPerTile(v);
  const embeds = g.input('inputs_embeds', DType.FLOAT, ['batch', 'sequence_length', t.hiddenSize]);
  const attnMask = g.input('attention_mask', DType.INT64, ['batch', 'total_sequence_length']);
  const posIds = g.input('position_ids', DType.INT64, ['batch', 'sequence_length']);
  const crossStates = g.input('cross_attention_states', DType.FLOAT, ['num_tiles_total', nTok, t.hiddenSize]);
  const crossMask = g.input('cross_attention_mask', DType.INT64, [
    'batch',
    'sequence_length',
    'num_images',
    v.maxNumTiles,
  ]);

  const { batch, allowedSelf, cos, sin } = decoderPrologue(g, t, embeds, attnMask, posIds);

  // modeling_mllama `_prepare_cross_attention_mask`: repeat each tile ×1601, additive min mask, and rows with
  // no visible tile get mask 0 (= attend uniformly over all tiles) via full_text_row_masked_out_mask; only the
  // MLP output of those rows is zeroed (HF, transformers #39379). Where(visible OR row-empty) is the same
  // selection without the -inf overflow an additive finfo.min mask risks in fp16 (model-contract §5.7).
  const cm = g.op('Unsqueeze', [g.op('Cast', [crossMask], { to: DType.FLOAT }), g.ints([4])]);
  const cmTok = g.op('Reshape', [g.op('Expand', [cm, g.ints([1, 1, 1, 1, nTok])]), g.ints([0, 0, -1])]);
  const cm4 = g.op('Unsqueeze', [cmTok, g.ints([1])]);
  const rowAny = g.op('ReduceMax', [cm4], { axes: [-1], keepdims: 1 });
  const allowedCross4 = g.op('Or', [
    g.op('Cast', [cm4], { to: DType.BOOL }),
    g.op('Not', [g.op('Cast', [rowAny], { to: DType.BOOL })]),
  ]);
  const allowedCross = g.op('Unsqueeze', [allowedCross4, g.ints([1])]);
  const fullTextRow = g.op('Squeeze', [rowAny, g.ints([1])]);

  const s: DecoderShared = { batch, allowedSelf, allowedCross, fullTextRow, cos, sin, crossStates };
  let x = embeds;
  for (let i = 0; i < t.numHiddenLayers; i++) {
    x = t.crossAttentionLayers.includes(i) ? crossLayer(g, w, t, s, i, x) : selfLayer(g, w, t, s, i, x);
  }
  x = rmsNorm(g, w, 'norm', x, t.hiddenSize, t.rmsNormEps);
  const logits = linear(g, w, 'lm_head', x, t.hiddenSize, t.vocabSize);
  g.op('Identity', [logits], {}, 'logits');
  // ORT returns outputs by name, so logits being declared after present.* is harmless.
  g.output('logits', DType.FLOAT, ['batch', 'sequence_length', t.vocabSize]);
  return built(g, 'RadScribe test fixture — output is meaningless. Tiny random-weight Mllama text decoder.');
}
