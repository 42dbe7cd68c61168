#!/bin/sh
# Runs on the lent GPU machine (no Rust, no R there): the prebuilt CUDA check binary and the
# PyTorch peer, then the ratio table. Build the binary here first with
# tools/build_cuda_check.sh; results go to $OUT/gpu_check.txt.
set -u
SP=$(python3 -c 'import site;print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH="$SP/nvidia/cu13/lib:$SP/nvidia/cublas/lib:${LD_LIBRARY_PATH:-}"
OUT="${OUT:-/tmp}"
{
  echo "== $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  ./.gpu/cuda_check
  echo "rustgpu exit: $?"
  python3 bench/torch_peer.py
} 2>&1 | tee "$OUT/gpu_check.txt"
# Ratio table: PyTorch step time / rustgpu step time (above 1: rustgpu is faster).
awk '/^step_ms rustgpu/ {r[$3] = $4} /^step_ms torch/ {t[$3] = $4}
     END {print "model  rustgpu_ms  torch_ms  torch/rustgpu"; for (m in r) if (m in t) printf "%-6s %10.3f %9.3f %13.2f\n", m, r[m], t[m], t[m] / r[m]}' \
  "$OUT/gpu_check.txt" | tee -a "$OUT/gpu_check.txt"
