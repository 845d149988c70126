import { ErrorCode, ModelError } from '../errors.js';
import { float16BitsToFloat32 } from './float16.js';
import { OnnxDataType, type OnnxGraph, type OnnxNode, type OnnxTensor } from './onnx-proto.js';

/**
 * com.microsoft MatMulNBits (onnxruntime docs/ContribOperators.md, since_version 1): Y = A @ dequant(B)^T with
 * B block-quantized along K. B is uint8 [N, k_blocks, blob_size] (k_blocks = ceil(K / block_size), blob_size =
 * block_size · bits / 8), codes packed low bits first along K; scales [N, k_blocks] (or flat) in A's type;
 * zero_points optional, packed like B ([N, ceil(k_blocks · bits / 8)] uint8), default 2^(bits-1).
 * Written by tools/export/quantize_int4.py; read here so `radscribe model check` can verify what the manifest
 * declares and tests can check the packing without Python.
 */
export const MATMUL_NBITS_DOMAIN = 'com.microsoft';
export const MATMUL_NBITS_OP = 'MatMulNBits';

export interface MatMulNBitsNode {
  name: string;
  k: number;
  n: number;
  bits: number;
  blockSize: number;
  /** A, B, scales, zero_points? (further optional inputs are not used by RadScribe's exporter). */
  inputs: string[];
}

export function isMatMulNBits(node: OnnxNode): boolean {
  return node.opType === MATMUL_NBITS_OP && node.domain === MATMUL_NBITS_DOMAIN;
}

export function matMulNBitsNodes(graph: OnnxGraph): MatMulNBitsNode[] {
  return graph.nodes.filter(isMatMulNBits).map((n) => ({
    name: n.name,
    k: n.attributes.K?.i ?? 0,
    n: n.attributes.N?.i ?? 0,
    bits: n.attributes.bits?.i ?? 4, // the spec's default
    blockSize: n.attributes.block_size?.i ?? 0,
    inputs: n.inputs,
  }));
}

/** A float32 or float16 initializer as float32 values. */
export function floatValues(t: OnnxTensor): Float32Array {
  if (t.external) throw new ModelError(ErrorCode.ModelInvalid, `${t.name}: external data is not read here`);
  if (t.dataType === OnnxDataType.Float) {
    if (t.raw.byteLength === 0) return Float32Array.from(t.floatData);
    const v = new DataView(t.raw.buffer, t.raw.byteOffset, t.raw.byteLength);
    return Float32Array.from({ length: t.raw.byteLength / 4 }, (_, i) => v.getFloat32(i * 4, true));
  }
  if (t.dataType === OnnxDataType.Float16) {
    const v = new DataView(t.raw.buffer, t.raw.byteOffset, t.raw.byteLength);
    return Float32Array.from({ length: t.raw.byteLength / 2 }, (_, i) =>
      float16BitsToFloat32(v.getUint16(i * 2, true)),
    );
  }
  throw new ModelError(ErrorCode.ModelInvalid, `${t.name}: data type ${t.dataType} is not a float`);
}

export interface DequantizedWeight {
  /** Row-major [K, N]: the layout of the MatMul B initializer this node replaced. */
  weight: Float32Array;
  /** Per block [N, k_blocks]: the quantization step (|scale|) of every weight's block. */
  scales: Float32Array;
  kBlocks: number;
}

/** Unpacks and dequantizes the B input of one MatMulNBits node: w = (q - zero_point) · scale. */
export function dequantizeMatMulNBits(graph: OnnxGraph, node: MatMulNBitsNode): DequantizedWeight {
  const { k, n, bits, blockSize } = node;
  if (bits !== 4)
    throw new ModelError(ErrorCode.ModelInvalid, `${node.name}: only bits = 4 is unpacked here (got ${bits})`);
  const get = (name: string | undefined): OnnxTensor => {
    const t = name ? graph.initializers.get(name) : undefined;
    if (!t) throw new ModelError(ErrorCode.ModelInvalid, `${node.name}: initializer ${name ?? '(none)'} missing`);
    return t;
  };
  const kBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const b = get(node.inputs[1]);
  if (b.dataType !== OnnxDataType.Uint8 || b.raw.byteLength !== n * kBlocks * blob)
    throw new ModelError(ErrorCode.ModelInvalid, `${node.name}: B must be uint8 [${n}, ${kBlocks}, ${blob}]`);
  const scales = floatValues(get(node.inputs[2]));
  if (scales.length !== n * kBlocks)
    throw new ModelError(ErrorCode.ModelInvalid, `${node.name}: scales must have ${n * kBlocks} elements`);
  const zpName = node.inputs[3];
  const zp = zpName ? get(zpName).raw : undefined;
  const zpStride = Math.ceil(kBlocks / 2);
  const weight = new Float32Array(k * n);
  for (let col = 0; col < n; col++) {
    for (let blk = 0; blk < kBlocks; blk++) {
      const s = scales[col * kBlocks + blk] as number;
      const zByte = zp ? (zp[col * zpStride + (blk >> 1)] as number) : 0x88;
      const z = blk & 1 ? zByte >> 4 : zByte & 0x0f;
      for (let j = 0; j < blockSize; j++) {
        const row = blk * blockSize + j;
        if (row >= k) break; // K padded up to a whole block
        const byte = b.raw[(col * kBlocks + blk) * blob + (j >> 1)] as number;
        const q = j & 1 ? byte >> 4 : byte & 0x0f;
        weight[row * n + col] = (q - z) * s;
      }
    }
  }
  return { weight, scales: scales.map(Math.abs), kBlocks };
}

/** What a graph's weights are, as read from its nodes (for `radscribe model check`). */
export interface GraphWeightSummary {
  matMulNBits: number;
  bits: number[];
  blockSizes: number[];
}

export function summarizeWeights(graph: OnnxGraph): GraphWeightSummary {
  const nodes = matMulNBitsNodes(graph);
  return {
    matMulNBits: nodes.length,
    bits: [...new Set(nodes.map((n) => n.bits))].sort(),
    blockSizes: [...new Set(nodes.map((n) => n.blockSize))].sort((a, b) => a - b),
  };
}
