#!/usr/bin/env python3
"""Self-test of export_mllama.merge_lora on the tiny random Mllama (no peft, no download):
a synthetic adapter in PEFT's file format merges to W + alpha/r * B@A under either transformers layout's key
spelling, and an adapter with one key that matches no module is refused. Run with the export environment
(tools/export/README.md): python3 tools/export/test_merge_lora.py"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import export_mllama as ex  # noqa: E402


def write_adapter(d: Path, tensors: dict, r: int, alpha: int) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(d / "adapter_model.safetensors"))
    (d / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": alpha, "peft_type": "LORA"}))


def main() -> int:
    import torch

    r, alpha = 4, 8
    model = ex.build_tiny(42)
    lay = ex.Layout(model)
    names = {id(m): n for n, m in model.named_modules()}
    q = lay.text_model.layers[0].self_attn.q_proj
    v = lay.vision_model.transformer.layers[0].self_attn.v_proj
    qn, vn = names[id(q)], names[id(v)]
    g = torch.Generator().manual_seed(1)
    tensors, expect = {}, {}
    for n, m in ((qn, q), (vn, v)):
        a = torch.randn(r, m.in_features, generator=g)
        b = torch.randn(m.out_features, r, generator=g)
        # Keys as the OTHER layout would spell them where an alias exists (4.45 <-> 4.52 paths).
        key = n.replace("language_model.model.", "model.language_model.").replace("vision_model.", "model.vision_model.", 1) \
            if not n.startswith("model.") else n
        tensors[f"base_model.model.{key}.lora_A.weight"] = a
        tensors[f"base_model.model.{key}.lora_B.weight"] = b
        expect[n] = m.weight.detach().clone() + alpha / r * (b @ a)
    with tempfile.TemporaryDirectory() as t:
        write_adapter(Path(t), tensors, r, alpha)
        assert ex.merge_lora(model, Path(t)) == 2
    for n, m in ((qn, q), (vn, v)):
        err = float((m.weight - expect[n]).abs().max())
        assert err < 1e-5, (n, err)
        print(f"merged {n}: max |W - (W0 + s*B@A)| = {err:.1e}")
    bad = dict(tensors)
    bad["base_model.model.language_model.model.layers.0.self_attn.nonexistent.lora_A.weight"] = torch.zeros(r, 4)
    with tempfile.TemporaryDirectory() as t:
        write_adapter(Path(t), bad, r, alpha)
        try:
            ex.merge_lora(model, Path(t))
        except SystemExit as e:
            print(f"refused as expected: {e}")
        else:
            raise AssertionError("an unmatched adapter key was accepted")
    print("merge_lora self-test OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
