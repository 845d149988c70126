#!/usr/bin/env bash
# The prepared GPU benchmark (issues 4 and 10), run from an exported bundle on a GPU host set up per
# docs/gpu-host.md:   bench/gpu/run.sh <bundle dir> [tokens]
# 1. checks the prerequisites and says which one is missing (exit 1): nvidia-smi and a GPU, Node.js, the
#    compiled bench, the two CUDA provider libraries of onnxruntime-node 1.30.0, CUDA 12 runtime and cuDNN 9
#    on the loader path, the bundle's manifest;
# 2. `radscribe model check <bundle> --ep cuda` (every graph loads on CUDA and matches the manifest);
# 3. the inference bench on that bundle with --ep cuda (generate() vs a bare session.run loop, interleaved
#    rounds, TTFT split into vision encoder / prefill / decode, vision encoder cost for 1-4 tiles);
# 4. gpu-bench: decode tokens/s against the memory-bandwidth bound of this bundle's decoder weights.
# Not run yet: no GPU host was available where it was written (see docs/gpu-host.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=${1:?usage: bench/gpu/run.sh <bundle dir> [tokens]}
tokens=${2:-64}
node=node_modules/.bin/node
[ -x "$node" ] || node=node
missing=()

echo "## Prerequisites"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
else
  missing+=("an NVIDIA GPU with a working driver (nvidia-smi -L)")
fi
"$node" --version >/dev/null 2>&1 || missing+=("Node.js 24 (npm ci installs it as node_modules/.bin/node)")
[ -f "$bundle/manifest.json" ] || missing+=("$bundle/manifest.json (export the bundle first: tools/export/README.md)")
provdir=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
for lib in libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
  [ -f "$provdir/$lib" ] || missing+=("$provdir/$lib (from NuGet Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0)")
done
# CUDA 12 runtime, cuBLAS and cuDNN 9 must be loadable: on LD_LIBRARY_PATH or in the ldconfig cache.
have_lib() {
  ldconfig -p 2>/dev/null | grep -q "$1" && return 0
  local IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do compgen -G "$d/$1*" >/dev/null && return 0; done
  return 1
}
for lib in libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libcufft.so.11 libcurand.so.10 libcudnn.so.9; do
  have_lib "$lib" || missing+=("$lib (CUDA 12 / cuDNN 9 on LD_LIBRARY_PATH)")
done
if [ ${#missing[@]} -gt 0 ]; then
  printf 'missing: %s\n' "${missing[@]}"
  echo "see docs/gpu-host.md"
  exit 1
fi
[ -f dist/bench/index.js ] && [ -f dist/bench/gpu/gpu-bench.js ] || npm run build >/dev/null

bw=""
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  bw=$(python3 - <<'PY'
import torch, time
n = 1 << 30  # 1 GiB
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(20): b.copy_(a)
torch.cuda.synchronize()
print(f"{2 * 20 * n / (time.perf_counter() - t) / 1e9:.0f}")  # read + write
PY
)
  echo "measured device-to-device bandwidth: ${bw} GB/s"
else
  case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" in
    *H200*) bw=4800 ;;
    *H100*) bw=3350 ;;
    *A100*) bw=2039 ;;
    *L40S*) bw=864 ;;
    *) bw=0 ;;
  esac
  echo "datasheet bandwidth: ${bw} GB/s (no PyTorch to measure it)"
fi

echo "## CUDA provider check"
bin/radscribe model check "$bundle" --ep cuda || { echo "CUDA EP not usable; see docs/gpu-host.md"; exit 1; }
echo "## Inference bench (cuda): generate() vs bare session.run, TTFT split, vision encoder per tile count"
RADSCRIBE_LOG_LEVEL=error BENCH_TOKENS="$tokens" BENCH_THREADS="${BENCH_THREADS:-4}" \
  "$node" dist/bench/index.js inference --ep cuda --bundle "$bundle"
echo "## Decode vs the memory-bandwidth bound (cuda)"
RADSCRIBE_LOG_LEVEL=error "$node" dist/bench/gpu/gpu-bench.js "$bundle" --ep cuda --tokens "$tokens" --bandwidth-gbs "$bw"
