#!/bin/sh
# Builds the CUDA build of the core crate on a machine without a GPU and fails if it does not
# compile (recipe: nvcc from PyPI wheels, a libcuda link stub; see README, GPU section): the
# crate's tests (compiled, not run: no GPU here) and the GPU check binary, .gpu/cuda_check,
# that tools/gpu_check.sh runs on a GPU machine. Needs ~1.4 GB of wheels and ~12 minutes cold
# on 2 cores. The wheels and the target dir live in RUSTGPU_CUDA_CACHE (default
# ~/.cache/rustgpu), kept between runs and clones, so later builds are incremental.
set -e
cd "$(dirname "$0")/.."
PATH="$PATH:$HOME/.cargo/bin"; export PATH
. ./tools/cmake-env.sh
CACHE="${RUSTGPU_CUDA_CACHE:-$HOME/.cache/rustgpu}"
VENV="$CACHE/cuda-venv"
TARGET="$CACHE/target-cuda"
mkdir -p "$CACHE"
if ! ls -d "$VENV"/lib/python3*/site-packages/nvidia/cu13/bin >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3 \
    nvidia-curand==10.4.0.35
fi
N="$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/cu13 | head -n 1)"
ROOT="$TARGET/cuda-home"
mkdir -p "$ROOT/lib/stubs"
for d in bin include nvvm; do ln -sfn "$N/$d" "$ROOT/$d"; done
for l in cublas cublasLt nvrtc cudart curand; do
  f=$(ls "$N"/lib/lib$l.so.* 2>/dev/null | head -n 1)
  [ -n "$f" ] && ln -sf "$f" "$ROOT/lib/lib$l.so"
done
# A link-time stand-in for the driver's libcuda.so.1 (never on the library path at run time).
CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -n 1)
if [ -z "$CUDARC" ]; then
  cargo fetch --locked >/dev/null
  CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -n 1)
fi
grep -rhoE "fn (cu[A-Za-z0-9_]+)\(" "$CUDARC/src/driver/sys" | sed -E 's/fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
  awk '{print "int " $1 "(void){return 999;}"}' > "$ROOT/lib/stubs/stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib/stubs/libcuda.so" "$ROOT/lib/stubs/stub.c"
ln -sf "$ROOT/lib/stubs/libcuda.so" "$ROOT/lib/libcuda.so"
cuda_cargo() {
  PATH="$N/bin:$PATH" CUDA_HOME="$ROOT" CUDA_PATH="$ROOT" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" \
    LIBRARY_PATH="$ROOT/lib:${LIBRARY_PATH:-}" cargo "$@" --release -j 2 --locked -p rustgpu-core --features cuda --target-dir "$TARGET"
}
echo "== cargo build --features cuda (rustgpu-core tests and the GPU check)"
cuda_cargo test --no-run --lib --tests
if command -v mpicc >/dev/null 2>&1; then
  # Multi-worker training's NCCL path (src/workers/nccl.rs, feature nccl: CUDA, MPI and
  # libnccl), linked against a stand-in for libnccl.so.2 as for the driver.
  grep -rhoE "fn (nccl[A-Za-z0-9_]+)\(" "$CUDARC/src/nccl/sys" | sed -E 's/fn (nccl[A-Za-z0-9_]+)\(/\1/' | sort -u |
    awk '{print "int " $1 "(void){return 999;}"}' > "$ROOT/lib/stubs/nccl_stub.c"
  gcc -shared -fPIC -Wl,-soname,libnccl.so.2 -o "$ROOT/lib/stubs/libnccl.so" "$ROOT/lib/stubs/nccl_stub.c"
  echo "== cargo build --features nccl (the NCCL path)"
  cuda_cargo test --no-run --lib --features nccl
fi
cuda_cargo build --example cuda_check
mkdir -p .gpu
cp "$TARGET/release/examples/cuda_check" .gpu/cuda_check
strip .gpu/cuda_check
ls -la .gpu/cuda_check
echo "== the CUDA build compiles"
