#!/usr/bin/env python3
"""Block-wise 4-bit weight-only quantization of an ONNX graph's MatMul weights into com.microsoft MatMulNBits.

numpy + onnx only (no Python onnxruntime, which the export host here lacks). Semantics follow onnxruntime's
contrib op spec (docs/ContribOperators.md, com.microsoft.MatMulNBits, since_version 1):

  Y = A @ dequant(B)^T,  dequant = (q - zero_point) * scale, per block of `block_size` along K
  attributes K, N, bits=4, block_size (power of two >= 16), accuracy_level
  B            uint8 [N, k_blocks, blob_size], k_blocks = ceil(K / block_size), blob_size = block_size * bits / 8;
               codes packed low nibble first along K (element 2j in bits 0-3, 2j+1 in bits 4-7)
  scales       same type as A, [N, k_blocks]  (this tool writes it flat [N * k_blocks], as onnxruntime's own
               MatMulNBitsQuantizer does; the kernels read it by element count)
  zero_points  optional uint8 [N, ceil(k_blocks * bits / 8)] packed like B; absent = 2^(bits-1) = 8

Which MatMuls: every MatMul whose second input is a 2-D float initializer [K, N] (the legacy exporter writes
nn.Linear without bias as MatMul against a pre-transposed weight). Activation x activation MatMuls (attention
scores) are left alone. K is zero-padded up to a multiple of block_size, as onnxruntime's quantizer pads.

Symmetric (default, as onnxruntime's quantizer with is_symmetric=True): per block the value of largest magnitude
`m` (sign kept) gives scale = m / -8, zero point 8, so m itself maps to code 0 and the 16 codes are all used;
q = clamp(round(w / scale) + 8, 0, 15). |w - dequant| <= |scale| / 2 except for a value of -m, which clamps to
code 15 and is off by at most |scale|.
Asymmetric: lo = min(w, 0), hi = max(w, 0), scale = (hi - lo) / 15, zero point = clamp(round(-lo / scale), 0, 15),
q = clamp(round(w / scale) + zp, 0, 15); |w - dequant| <= |scale| / 2.

Usage:
  quantize_int4.py --src <bundle> --out <bundle-int4> [--block-size 32|128] [--asymmetric]
      copies the bundle, quantizes onnx/decoder_model_merged.onnx only (vision encoder and embeddings stay),
      and rewrites manifest.json (hashes, onnx.decoder.weightDtype = "int4" + quantization, provenance.weights)
  export_mllama.py export ... --quantize int4       calls quantize_decoder_file() on the exported decoder
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

BITS = 4
MS_DOMAIN = "com.microsoft"
BLOCK_SIZES = (16, 32, 64, 128, 256)
DECODER = "onnx/decoder_model_merged.onnx"
# Graphs over onnx's 2 GB protobuf limit keep their weights as external data beside the graph.
EXTERNAL_DATA_THRESHOLD = 1 << 30


def quantize_weight(w: np.ndarray, block_size: int, symmetric: bool, scale_dtype=np.float32):
    """w float [K, N] (MatMul's B) -> (packed uint8 [N, k_blocks, block_size/2], scales [N, k_blocks] in
    scale_dtype (the graph's float type: the codes are rounded against the scale the kernel will read),
    zero_points packed uint8 [N, ceil(k_blocks/2)] or None)."""
    if block_size not in BLOCK_SIZES:
        raise ValueError(f"block_size must be one of {BLOCK_SIZES}")
    k, n = w.shape
    k_blocks = -(-k // block_size)
    wt = np.zeros((n, k_blocks * block_size), dtype=np.float32)
    wt[:, :k] = w.astype(np.float32).T  # [N, K]: MatMulNBits blocks run along K for each output column
    blocks = wt.reshape(n, k_blocks, block_size)
    if symmetric:
        idx = np.abs(blocks).argmax(axis=2)[..., None]
        m = np.take_along_axis(blocks, idx, axis=2)[..., 0]
        scales = m / -8.0
        zp = np.full((n, k_blocks), 8, dtype=np.int32)
    else:
        lo = np.minimum(blocks.min(axis=2), 0.0)
        hi = np.maximum(blocks.max(axis=2), 0.0)
        scales = (hi - lo) / 15.0
    scales = scales.astype(scale_dtype).astype(np.float32)
    if not symmetric:  # zero points from the stored scale, so lo still maps into [0, 15]
        safe = np.where(scales == 0, 1.0, scales)
        zp = np.clip(np.rint(-lo / safe), 0, 15).astype(np.int32)
    safe = np.where(scales == 0, 1.0, scales)[..., None]
    q = np.clip(np.rint(blocks / safe) + zp[..., None], 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)  # low nibble = even K index
    zero_points = None
    if not symmetric:
        zpp = np.full((n, k_blocks + (k_blocks & 1)), 8, dtype=np.uint8)  # odd count: pad nibble = default 8
        zpp[:, :k_blocks] = zp
        zero_points = (zpp[:, 0::2] | (zpp[:, 1::2] << 4)).astype(np.uint8)
    return packed, scales, zero_points


def dequantize_weight(packed: np.ndarray, scales: np.ndarray, zero_points, k: int) -> np.ndarray:
    """Inverse of quantize_weight, back to MatMul's [K, N] layout (self-check; the TS unit test does the same)."""
    n, k_blocks, blob = packed.shape
    q = np.empty((n, k_blocks, blob * 2), dtype=np.int32)
    q[..., 0::2] = packed & 0x0F
    q[..., 1::2] = packed >> 4
    if zero_points is None:
        zp = np.full((n, k_blocks), 8, dtype=np.int32)
    else:
        zp = np.empty((n, zero_points.shape[1] * 2), dtype=np.int32)
        zp[:, 0::2] = zero_points & 0x0F
        zp[:, 1::2] = zero_points >> 4
        zp = zp[:, :k_blocks]
    w = (q - zp[..., None]) * scales.reshape(n, k_blocks)[..., None]
    return w.reshape(n, -1)[:, :k].T


def quantize_graph(model, block_size: int = 32, symmetric: bool = True, accuracy_level: int = 0) -> int:
    """Rewrites `model` in place; returns the number of MatMuls replaced. accuracy_level 0 = unset (the kernel
    computes in A's type); 4 = int8 activations on CPU, faster and less exact."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    float_types = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}
    done: dict[str, tuple[str, str, str | None, int, int]] = {}  # initializer -> (B, scales, zp, K, N)
    new_nodes, replaced = [], 0
    for node in g.node:
        b = node.input[1] if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") else None
        t = inits.get(b) if b else None
        if t is None or len(t.dims) != 2 or t.data_type not in float_types:
            new_nodes.append(node)
            continue
        if b not in done:
            w = numpy_helper.to_array(t)
            packed, scales, zp = quantize_weight(w, block_size, symmetric, float_types[t.data_type])
            k, n = w.shape
            names = (f"{b}_Q4", f"{b}_scales", f"{b}_zero_points" if zp is not None else None)
            g.initializer.append(numpy_helper.from_array(packed, names[0]))
            # scales in A's type (= the weight's type in these graphs), flat as onnxruntime's quantizer writes them
            g.initializer.append(numpy_helper.from_array(scales.reshape(-1).astype(float_types[t.data_type]),
                                                         names[1]))
            if zp is not None:
                g.initializer.append(numpy_helper.from_array(zp.reshape(-1), names[2]))
            done[b] = (*names, k, n)
        qb, qs, qz, k, n = done[b]
        inputs = [node.input[0], qb, qs] + ([qz] if qz else [])
        attrs = {"K": k, "N": n, "bits": BITS, "block_size": block_size}
        if accuracy_level:
            attrs["accuracy_level"] = accuracy_level
        new_nodes.append(helper.make_node("MatMulNBits", inputs, list(node.output),
                                          name=f"{node.name or b}_Q4", domain=MS_DOMAIN, **attrs))
        replaced += 1
    del g.node[:]
    g.node.extend(new_nodes)
    used = {i for nd in g.node for i in nd.input}
    keep = [t for t in g.initializer if t.name in used or t.name not in done]
    del g.initializer[:]
    g.initializer.extend(keep)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return replaced


def quantize_decoder_file(path: Path, block_size: int = 32, symmetric: bool = True,
                          accuracy_level: int = 0) -> int:
    """Quantizes one graph file in place (its external data, if any, is rewritten beside it)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=True)
    n = quantize_graph(model, block_size, symmetric, accuracy_level)
    big = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_THRESHOLD
    for f in path.parent.glob(path.name + "*"):
        f.unlink()
    if big:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + "_data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return n


def quantization_info(block_size: int, symmetric: bool, matmuls: int) -> dict:
    """The manifest's description of a MatMulNBits graph (docs/model-bundle.md, onnx.<role>.quantization)."""
    return {"op": f"{MS_DOMAIN}.MatMulNBits", "bits": BITS, "blockSize": block_size, "symmetric": symmetric,
            "matmuls": matmuls}


def annotate_manifest(bundle: Path, quantization: dict, role: str = "decoder") -> None:
    """Declares an int4 graph in an already written manifest.json (hashes do not cover manifest.json)."""
    mf = Path(bundle) / "manifest.json"
    manifest = json.loads(mf.read_text())
    manifest["onnx"][role]["weightDtype"] = "int4"
    manifest["onnx"][role]["quantization"] = quantization
    mf.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def quantize_bundle(src: Path, out: Path, block_size: int, symmetric: bool, accuracy_level: int = 0) -> dict:
    """Copy of bundle `src` with its decoder int4; manifest rehashed. Graph I/O is unchanged (weight-only)."""
    manifest = json.loads((src / "manifest.json").read_text())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel in manifest["files"]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out / rel)
    n = quantize_decoder_file(out / manifest["onnx"]["decoder"]["path"], block_size, symmetric, accuracy_level)
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[p.relative_to(out).as_posix()] = {"sha256": _sha256(p), "size": p.stat().st_size}
    manifest["files"] = files
    manifest["onnx"]["decoder"]["weightDtype"] = "int4"
    manifest["onnx"]["decoder"]["quantization"] = quantization_info(block_size, symmetric, n)
    manifest["name"] = manifest["name"] + "-int4"
    kind = "symmetric" if symmetric else "asymmetric"
    manifest["provenance"]["weights"] += (f"; decoder MatMul weights int4 (MatMulNBits, block {block_size}, {kind}) "
                                          "by tools/export/quantize_int4.py")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, type=Path, help="fp32/fp16 bundle")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--block-size", type=int, default=32, choices=BLOCK_SIZES)
    ap.add_argument("--asymmetric", action="store_true", help="per-block zero points (default: symmetric)")
    ap.add_argument("--accuracy-level", type=int, default=0, choices=(0, 1, 2, 3, 4))
    ap.add_argument("--readme", help="text appended to the copied README.md")
    a = ap.parse_args(argv)
    m = quantize_bundle(a.src, a.out, a.block_size, not a.asymmetric, a.accuracy_level)
    if a.readme:
        readme = a.out / "README.md"
        readme.write_text((readme.read_text() if readme.exists() else "") + a.readme)
        p = readme.relative_to(a.out).as_posix()
        m["files"][p] = {"sha256": _sha256(readme), "size": readme.stat().st_size}
        (a.out / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n")
    q = m["onnx"]["decoder"]["quantization"]
    print(f"wrote {a.out}: {q['matmuls']} MatMul -> MatMulNBits (block {q['blockSize']}, "
          f"{'symmetric' if q['symmetric'] else 'asymmetric'}); now run: radscribe model check {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
