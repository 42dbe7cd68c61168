#!/bin/sh
# Runs on the lent GPU machine (no Rust, no R there): the prebuilt CUDA check binary and the
# PyTorch peer. Build the binary here first with tools/build_cuda_check.sh; results go to $OUT.
set -u
SP=$(python3 -c 'import site;print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH="$SP/nvidia/cu13/lib:$SP/nvidia/cublas/lib:${LD_LIBRARY_PATH:-}"
OUT="${OUT:-/tmp}"
{
  echo "== $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  ./.gpu/cuda_check
  echo "rustgpu exit: $?"
  python3 bench/torch_mlp.py
} 2>&1 | tee "$OUT/gpu_check.txt"
