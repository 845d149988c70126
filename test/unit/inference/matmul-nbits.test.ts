/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { dequantizeMatMulNBits, floatValues, matMulNBitsNodes } from '../../../src/inference/matmul-nbits.js';
import { type OnnxGraph, readOnnxModel } from '../../../src/inference/onnx-proto.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/**
 * The int4 packing of tools/export/quantize_int4.py, checked without Python: the TypeScript unpacker
 * (onnxruntime's MatMulNBits spec) must give back every fp32 weight within its block's quantization step, and
 * onnxruntime itself must compute A @ (that dequantized weight), so Python, TypeScript and ORT read the
 * nibbles, blocks, scales and zero points the same way.
 */
const MM_DIR = path.join(FIXTURES_DIR, 'models', 'matmul-nbits');
const load = (file: string): OnnxGraph => readOnnxModel(readFileSync(file));

function initializer(g: OnnxGraph, name: string): Float32Array {
  const t = g.initializers.get(name);
  if (!t) throw new Error(`no initializer ${name}`);
  return floatValues(t);
}

/** max over weights of |dequantized - fp32| / step, step = |scale| of the weight's block. */
function worstRatio(w: Float32Array, deq: Float32Array, scales: Float32Array, k: number, n: number, block: number) {
  const kBlocks = Math.ceil(k / block);
  let worst = 0;
  for (let row = 0; row < k; row++) {
    for (let col = 0; col < n; col++) {
      const step = scales[col * kBlocks + Math.floor(row / block)] as number;
      const d = Math.abs((deq[row * n + col] as number) - (w[row * n + col] as number));
      worst = Math.max(worst, step === 0 ? (d === 0 ? 0 : Number.POSITIVE_INFINITY) : d / step);
    }
  }
  return worst;
}

describe('MatMulNBits packing (single MatMul, K = 40, N = 6)', () => {
  const fp32 = load(path.join(MM_DIR, 'matmul-fp32.onnx'));
  const w = initializer(fp32, 'W');

  it.each([
    ['int4-sym-b16', 16, true],
    ['int4-asym-b16', 16, false],
    ['int4-asym-b32', 32, false],
  ] as const)('%s: unpacks within the quantization step and onnxruntime agrees', async (name, block, symmetric) => {
    const file = path.join(MM_DIR, `matmul-${name}.onnx`);
    const g = load(file);
    const [node] = matMulNBitsNodes(g);
    if (!node) throw new Error('no MatMulNBits node');
    expect(node).toMatchObject({ k: 40, n: 6, bits: 4, blockSize: block });
    expect(Boolean(node.inputs[3])).toBe(!symmetric);
    const { weight, scales } = dequantizeMatMulNBits(g, node);
    // Round-to-nearest: half a step; symmetric blocks map -max to code 15 (clamped), at most one step.
    expect(worstRatio(w, weight, scales, 40, 6, block)).toBeLessThanOrEqual(symmetric ? 1 + 1e-6 : 0.5 + 1e-6);

    const a = Float32Array.from({ length: 3 * 40 }, (_, i) => Math.sin(i * 0.7) + 0.1);
    const s = await ort.InferenceSession.create(file);
    try {
      const y = (await s.run({ A: new ort.Tensor('float32', a, [1, 3, 40]) })).Y as ort.Tensor;
      expect(y.dims).toEqual([1, 3, 6]);
      const out = y.data as Float32Array;
      let worst = 0;
      for (let r = 0; r < 3; r++) {
        for (let c = 0; c < 6; c++) {
          let ref = 0;
          for (let k = 0; k < 40; k++) ref += (a[r * 40 + k] as number) * (weight[k * 6 + c] as number);
          worst = Math.max(worst, Math.abs(ref - (out[r * 6 + c] as number)));
        }
      }
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await s.release();
    }
  });
});

describe('tiny-mllama-real-int4 decoder weights vs the fp32 decoder', () => {
  const dec = 'onnx/decoder_model_merged.onnx';
  const fp32 = load(path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real', dec));
  const int4 = load(path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real-int4', dec));

  it('every projection and lm_head is MatMulNBits, each within its block quantization step', () => {
    const weightMatMuls = fp32.nodes.filter(
      (n) => n.opType === 'MatMul' && fp32.initializers.get(n.inputs[1] ?? '')?.dims.length === 2,
    );
    const nodes = matMulNBitsNodes(int4);
    expect(nodes.length).toBe(weightMatMuls.length);
    expect(nodes.length).toBe(36); // 5 layers x 7 projections + lm_head
    expect(int4.nodes.filter((n) => n.opType === 'MatMul').length).toBe(
      fp32.nodes.filter((n) => n.opType === 'MatMul').length - 36,
    );
    for (const node of nodes) {
      const orig = weightMatMuls.find((n) => `${n.name}_Q4` === node.name);
      if (!orig) throw new Error(`${node.name}: no fp32 MatMul of that name`);
      const w = initializer(fp32, orig.inputs[1] as string);
      expect(w.length).toBe(node.k * node.n);
      const { weight, scales } = dequantizeMatMulNBits(int4, node);
      expect(worstRatio(w, weight, scales, node.k, node.n, node.blockSize)).toBeLessThanOrEqual(1 + 1e-6);
    }
  });
});
