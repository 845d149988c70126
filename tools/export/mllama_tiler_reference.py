"""Reference tensors of Hugging Face MllamaImageProcessor for the tiler golden test (issue 10).

Reads the PNGs and cases.json that `node dist/tools/tiler-golden.js --out DIR [--with-tensors]` wrote (the
8-bit RGB images RadScribe renders), runs transformers' MllamaImageProcessor with the fixture's
preprocessor_config.json (Llama-3.2-11B-Vision-Instruct's values) and writes
test/fixtures/tiler-golden/reference.json: per-tile SHA-256 of the float32 pixel_values, aspect_ratio_ids,
aspect_ratio_mask, num_tiles and versions. With the tiler's own tensors in DIR it also records max |Δ|.
Imports transformers; vendors none of it.

    python3 tools/export/mllama_tiler_reference.py --cases DIR --out test/fixtures/tiler-golden/reference.json \
        [--transformers-commit SHA]
"""

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys

import numpy as np
import PIL
from PIL import Image

import transformers
from transformers import MllamaImageProcessor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def transformers_commit(given):
    if given:
        return given
    src = os.path.dirname(os.path.dirname(os.path.abspath(transformers.__file__)))
    try:
        return subprocess.check_output(["git", "-C", src, "rev-parse", "HEAD"], text=True, stderr=subprocess.DEVNULL).strip()
    except Exception:  # an exported source tree without .git: pass --transformers-commit
        return None


def torch_version():
    try:
        import torch  # noqa: F401  (not on the numeric path here: return_tensors="np")

        return torch.__version__
    except ImportError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--transformers-commit", help="commit of the transformers source tree, if it has no .git")
    args = ap.parse_args()
    with open(os.path.join(ROOT, "test/fixtures/models/tiny-mllama/preprocessor_config.json")) as f:
        cfg = json.load(f)
    proc = MllamaImageProcessor(**{k: v for k, v in cfg.items() if k not in ("image_processor_type", "processor_class")})
    with open(os.path.join(args.cases, "cases.json")) as f:
        cases = json.load(f)
    out_cases = []
    for c in cases:
        img = Image.open(os.path.join(args.cases, c["name"] + ".png"))
        img.load()
        assert img.mode == "RGB", img.mode
        rgb = np.asarray(img, dtype=np.uint8)
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == c["renderedRgbSha256"], c["name"]
        enc = proc(images=[[img]], return_tensors="np")
        pv = np.ascontiguousarray(enc["pixel_values"], dtype="<f4")  # [1, 1, 4, 3, 560, 560]
        tiles = pv.reshape(pv.shape[2], -1)
        entry = {
            "name": c["name"],
            "file": c["file"],
            "frame": c["frame"],
            "width": c["width"],
            "height": c["height"],
            "renderedRgbSha256": c["renderedRgbSha256"],
            "pixelValuesShape": list(pv.shape),
            "numTiles": int(enc["num_tiles"][0][0]),
            "aspectRatioIds": enc["aspect_ratio_ids"].astype(int).tolist(),
            "aspectRatioMask": enc["aspect_ratio_mask"].astype(int).tolist(),
            "tileSha256": [hashlib.sha256(t.tobytes()).hexdigest() for t in tiles],
            # Coarse per-tile summaries, only to say how far off a mismatch is (sum in float64).
            "tileSum": [float(t.astype(np.float64).sum()) for t in tiles],
        }
        if "cropRows" in c:
            entry["cropRows"] = c["cropRows"]
        ours = os.path.join(args.cases, c["name"] + ".pixel_values.f32")
        if os.path.exists(ours):
            mine = np.fromfile(ours, dtype="<f4").reshape(pv.shape)
            entry["maxAbsDiffAtGeneration"] = float(np.abs(mine.astype(np.float64) - pv).max())
        print(c["name"], entry["numTiles"], entry["aspectRatioIds"], entry.get("maxAbsDiffAtGeneration"))
        out_cases.append(entry)
    ref = {
        "comment": "HF MllamaImageProcessor on RadScribe-rendered 8-bit RGB images; see README.md",
        "versions": {
            "transformers": transformers.__version__,
            "transformersCommit": transformers_commit(args.transformers_commit),
            "torch": torch_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "python": platform.python_version(),
        },
        "preprocessorConfig": cfg,
        "cases": out_cases,
    }
    with open(args.out, "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
