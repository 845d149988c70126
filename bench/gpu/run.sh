#!/usr/bin/env bash
# One prepared GPU benchmark (issue 4). On a GPU host with the CUDA provider libraries in place
# (docs/gpu-host.md):  bench/gpu/run.sh <bundle> [tokens]
# Prints: GPU, the CUDA provider check, provider in use, time to first token, decode tokens/s, and the
# memory-bandwidth bound for this bundle's decoder (bandwidth measured here with a device-to-device copy
# when PyTorch is present, else the datasheet value of the detected card).
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=${1:?usage: bench/gpu/run.sh <bundle> [tokens]}
tokens=${2:-64}
node=node_modules/.bin/node
[ -x "$node" ] || node=node

echo "## GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"

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

[ -f dist/bench/gpu/gpu-bench.js ] || npm run build >/dev/null
echo "## CUDA provider check"
bin/radscribe model check "$bundle" --ep cuda || { echo "CUDA EP not usable; see docs/gpu-host.md"; exit 1; }
echo "## Benchmark (cuda)"
RADSCRIBE_LOG_LEVEL=error "$node" dist/bench/gpu/gpu-bench.js "$bundle" --ep cuda --tokens "$tokens" --bandwidth-gbs "$bw"
