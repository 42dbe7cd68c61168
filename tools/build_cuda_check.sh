#!/bin/sh
# Builds the CUDA check binary on a machine without a GPU (recipe: nvcc from PyPI wheels, a
# libcuda link stub; see README, GPU section). Output: .gpu/cuda_check. Needs ~1.4 GB of wheels
# and ~12 minutes cold on 2 cores; keeps its own target dir (target-cuda).
set -e
cd "$(dirname "$0")/.."
VENV=.cuda-venv
if [ ! -x "$VENV/bin/nvcc" ] && [ ! -d "$VENV/lib/python3.11/site-packages/nvidia/cu13/bin" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3 \
    nvidia-curand==10.4.0.35
fi
N="$(ls -d "$PWD/$VENV"/lib/python3*/site-packages/nvidia/cu13)"
ROOT="$PWD/target-cuda/cuda-home"
mkdir -p "$ROOT/lib/stubs"
for d in bin include nvvm; do ln -sfn "$N/$d" "$ROOT/$d"; done
for l in cublas cublasLt nvrtc cudart curand; do
  f=$(ls "$N"/lib/lib$l.so.* 2>/dev/null | head -n 1)
  [ -n "$f" ] && ln -sf "$f" "$ROOT/lib/lib$l.so"
done
# A link-time stand-in for the driver's libcuda.so.1 (never on the library path at run time).
CUDARC=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* | tail -n 1)
grep -rhoE "fn (cu[A-Za-z0-9_]+)\(" "$CUDARC/src/driver/sys" | sed -E 's/fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
  awk '{print "int " $1 "(void){return 999;}"}' > "$ROOT/lib/stubs/stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib/stubs/libcuda.so" "$ROOT/lib/stubs/stub.c"
ln -sf "$ROOT/lib/stubs/libcuda.so" "$ROOT/lib/libcuda.so"
PATH="$N/bin:$PATH" CUDA_HOME="$ROOT" CUDA_PATH="$ROOT" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" \
  LIBRARY_PATH="$ROOT/lib:${LIBRARY_PATH:-}" \
  cargo build --release -j 2 -p rustgpu-core --features cuda --example cuda_check --target-dir target-cuda
mkdir -p .gpu
cp target-cuda/release/examples/cuda_check .gpu/cuda_check
strip .gpu/cuda_check
ls -la .gpu/cuda_check
