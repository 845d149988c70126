#!/usr/bin/env python3
"""Writes test/fixtures/models/matmul-nbits: one MatMul [*, 40] x [40, 6] in fp32 and as MatMulNBits
(symmetric block 16, asymmetric block 16 and 32: K = 40 is no multiple of either, so the zero padding of the last
block and an odd zero-point count are exercised). test/unit/inference/matmul-nbits.test.ts runs them on
onnxruntime-node and unpacks them in TypeScript. numpy + onnx only; run from the repository root."""
import sys; sys.path.insert(0, 'tools/export')
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
from quantize_int4 import quantize_graph
out = 'test/fixtures/models/matmul-nbits'
rng = np.random.RandomState(7)
K, N = 40, 6   # K not a multiple of the block: exercises the zero padding
w = (rng.standard_normal((K, N)) * 0.3 + 0.05).astype(np.float32)
def graph():
    g = helper.make_graph([helper.make_node('MatMul', ['A', 'W'], ['Y'], name='proj/MatMul')], 'mm',
        [helper.make_tensor_value_info('A', TensorProto.FLOAT, ['batch', 'seq', K])],
        [helper.make_tensor_value_info('Y', TensorProto.FLOAT, ['batch', 'seq', N])],
        [numpy_helper.from_array(w, 'W')])
    return helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
onnx.save_model(graph(), f'{out}/matmul-fp32.onnx')
for name, bs, sym in [('int4-sym-b16', 16, True), ('int4-asym-b16', 16, False), ('int4-asym-b32', 32, False)]:
    m = graph(); assert quantize_graph(m, bs, sym) == 1
    onnx.save_model(m, f'{out}/matmul-{name}.onnx')
