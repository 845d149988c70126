import { DType, GraphBuilder, type GraphBuilderOptions } from './graph-builder.js';
import { layerNorm, linear, quickGelu, rmsNorm, type WeightSource } from './layers.js';
import {
  type BuiltGraph,
  type DecoderShared,
  decoderPrologue,
  selfLayer,
  type TinyTextConfig,
} from './mllama-graphs.js';

/**
 * The transformers.js-layout graphs of a tiny embedding-merge VLM (LLaVA / Gemma 3 / SmolVLM style,
 * model-contract §4): vision_encoder → image_features [B, tokensPerImage, H]; embed_tokens; a Llama-style
 * decoder_model_merged over inputs_embeds with past/present KV for every layer. The runtime scatters the
 * image features into inputs_embeds at the image-token positions.
 */

export interface TinyMergeVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  /** SigLIP-style fixed input side (no tiles). */
  imageSize: number;
  patchSize: number;
  numChannels: number;
  normEps: number;
}

export function mergeTokensPerImage(v: TinyMergeVisionConfig): number {
  return (v.imageSize / v.patchSize) ** 2;
}

/** SigLIP in miniature: conv patch embed (+bias) → learned positions → one pre-LN MLP block → post-LN → projector. */
export function buildMergeVisionEncoder(
  v: TinyMergeVisionConfig,
  textHidden: number,
  w: WeightSource,
  opts: GraphBuilderOptions = {},
): BuiltGraph {
  const g = new GraphBuilder('merge_vision_encoder', opts);
  const D = v.hiddenSize;
  const side = v.imageSize / v.patchSize;
  const n = side * side;
  const pixel = g.input('pixel_values', DType.FLOAT, ['batch', v.numChannels, v.imageSize, v.imageSize]);
  const convW = g.weight(
    'patch_embedding.weight',
    [D, v.numChannels, v.patchSize, v.patchSize],
    w.normal(D * v.numChannels * v.patchSize ** 2, 1 / Math.sqrt(v.numChannels * v.patchSize ** 2)),
  );
  const convB = g.weight('patch_embedding.bias', [D], w.normal(D, 0.02));
  const conv = g.op('Conv', [pixel, convW, convB], {
    kernel_shape: [v.patchSize, v.patchSize],
    strides: [v.patchSize, v.patchSize],
  });
  let h = g.op('Transpose', [g.op('Reshape', [conv, g.ints([0, D, n])])], { perm: [0, 2, 1] });
  const pos = g.weight('position_embedding.weight', [n, D], w.normal(n * D, 1));
  h = g.op('Add', [h, pos]);
  const mlpIn = layerNorm(g, w, 'encoder.layer0.layer_norm2', h, D, v.normEps);
  const fc1 = quickGelu(g, linear(g, w, 'encoder.layer0.mlp.fc1', mlpIn, D, v.intermediateSize, true));
  h = g.op('Add', [h, linear(g, w, 'encoder.layer0.mlp.fc2', fc1, v.intermediateSize, D, true)]);
  h = layerNorm(g, w, 'post_layernorm', h, D, v.normEps);
  // Gemma 3's multi_modal_projector normalises (RMSNorm) then projects to the text width.
  const normed = rmsNorm(g, w, 'multi_modal_projector.mm_soft_emb_norm', h, D, 1e-6);
  const projected = linear(g, w, 'multi_modal_projector.mm_input_projection', normed, D, textHidden);
  g.op('Identity', [projected], {}, 'image_features');
  g.output('image_features', DType.FLOAT, ['batch', n, textHidden]);
  const io = g.ioSpec();
  return {
    bytes: g.encode('RadScribe test fixture — output is meaningless. Tiny random-weight merge-VLM vision encoder.'),
    io,
  };
}

/** decoder_model_merged: inputs_embeds, attention_mask, position_ids, past KV of every layer → logits, present. */
export function buildMergeDecoder(t: TinyTextConfig, w: WeightSource, opts: GraphBuilderOptions = {}): BuiltGraph {
  const g = new GraphBuilder('merge_text_decoder', opts);
  const embeds = g.input('inputs_embeds', DType.FLOAT, ['batch', 'sequence_length', t.hiddenSize]);
  const attnMask = g.input('attention_mask', DType.INT64, ['batch', 'total_sequence_length']);
  const posIds = g.input('position_ids', DType.INT64, ['batch', 'sequence_length']);
  const pro = decoderPrologue(g, t, embeds, attnMask, posIds);
  // No cross-attention layers: the cross fields of DecoderShared are never read by selfLayer.
  const s: DecoderShared = { ...pro, allowedCross: '', fullTextRow: '', crossStates: '' };
  let x = embeds;
  for (let i = 0; i < t.numHiddenLayers; i++) x = selfLayer(g, w, t, s, i, x);
  x = rmsNorm(g, w, 'norm', x, t.hiddenSize, t.rmsNormEps);
  const logits = linear(g, w, 'lm_head', x, t.hiddenSize, t.vocabSize);
  g.op('Identity', [logits], {}, 'logits');
  g.output('logits', DType.FLOAT, ['batch', 'sequence_length', t.vocabSize]);
  const io = g.ioSpec();
  return {
    bytes: g.encode('RadScribe test fixture — output is meaningless. Tiny random-weight merge-VLM text decoder.'),
    io,
  };
}
