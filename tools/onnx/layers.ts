import { Mulberry32 } from '../../src/inference/prng.js';
import type { GraphBuilder } from './graph-builder.js';

/**
 * Layer helpers that emit opset-17 subgraphs for the tiny Mllama fixture. Each mirrors a module of
 * HF transformers `models/mllama/modeling_mllama.py` in miniature; weights come from one seeded stream.
 */

/** Deterministic weight source: every call draws from the same seeded stream, in call order. */
export class WeightSource {
  private readonly rng: Mulberry32;
  constructor(seed: number) {
    this.rng = new Mulberry32(seed);
  }
  /** N(0, std²) values. */
  normal(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.rng.normal() * std;
    return out;
  }
  /** Uniform in [lo, hi). */
  uniform(n: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.rng.next();
    return out;
  }
}

/**
 * Linear layer y = x·Wᵀ(+b), stored pre-transposed as [in, out] for MatMul. Std 1/sqrt(fan_in) keeps
 * activations O(1) through the tiny stack, so logits are not degenerate (HF's 0.02 init would be at
 * hidden 4096; at hidden 32 it flattens every logit to ~0).
 */
export function linear(
  g: GraphBuilder,
  w: WeightSource,
  name: string,
  x: string,
  inDim: number,
  outDim: number,
  bias = false,
): string {
  const W = g.weight(`${name}.weight`, [inDim, outDim], w.normal(inDim * outDim, 1 / Math.sqrt(inDim)));
  const y = g.op('MatMul', [x, W]);
  if (!bias) return y;
  const b = g.weight(`${name}.bias`, [outDim], w.normal(outDim, 0.02));
  return g.op('Add', [y, b]);
}

/** MllamaTextRMSNorm: x · rsqrt(mean(x²) + eps) · weight over the last axis. */
export function rmsNorm(g: GraphBuilder, w: WeightSource, name: string, x: string, dim: number, eps: number): string {
  const weight = g.weight(`${name}.weight`, [dim], w.uniform(dim, 0.8, 1.2));
  const sq = g.op('Mul', [x, x]);
  const mean = g.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
  const denom = g.op('Sqrt', [g.op('Add', [mean, g.floats([eps])])]);
  return g.op('Mul', [g.op('Div', [x, denom]), weight]);
}

/** nn.LayerNorm over the last axis (opset 17 LayerNormalization). */
export function layerNorm(g: GraphBuilder, w: WeightSource, name: string, x: string, dim: number, eps: number): string {
  const scale = g.weight(`${name}.weight`, [dim], w.uniform(dim, 0.8, 1.2));
  const bias = g.weight(`${name}.bias`, [dim], w.normal(dim, 0.02));
  return g.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: { float: eps } });
}

/** SiLU = x·σ(x) (Llama MLP act). */
export function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** quick_gelu = x·σ(1.702x), the CLIP activation; opset 17 has no Gelu op (added in opset 20). */
export function quickGelu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.floats([1.702])])])]);
}

/** A tanh gate scalar as in Mllama (`gate.tanh() * h`). Real init is 0; the fixture uses a nonzero gate so the image path matters. */
export function tanhGate(g: GraphBuilder, w: WeightSource, name: string, x: string): string {
  const gate = g.weight(name, [1], w.uniform(1, 0.5, 1.0));
  return g.op('Mul', [g.op('Tanh', [gate]), x]);
}

/** torch.finfo(float32).min, the additive mask value HF uses (modeling_mllama `_prepare_cross_attention_mask`). */
export const FLOAT32_MIN = -3.4028234663852886e38;
