#!/bin/sh
# The benchmark suite in one command: sets up (R packages, a tf-keras venv), installs rustgpu,
# then runs bench/suite.R (rustgpu vs tf-keras), bench/multi_gpu_scaling.R (1 vs 2
# virtual GPUs), bench/data_path.R, bench/multi_worker_scaling.R (1, 2, 4 MPI ranks) and
# bench/measured_split.R, then prints issue #20's targets against the figures
# (bench/targets.R). Results: bench/results/.
set -e
cd "$(dirname "$0")/.."
PATH="$PATH:$HOME/.cargo/bin"; export PATH
./tools/setup.sh
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q "tensorflow-cpu==2.21.*" "tf-keras==2.21.*"
fi
LIB="${RUSTGPU_LIB:-$PWD/.rlib}"
mkdir -p "$LIB"
export RUSTGPU_TARGET_DIR="${RUSTGPU_TARGET_DIR:-$PWD/target}"
R CMD INSTALL --no-test-load -l "$LIB" . >/tmp/rustgpu-install.log 2>&1 || { tail -n 40 /tmp/rustgpu-install.log; exit 1; }
R_LIBS="$LIB" PYTHON=bench/.venv/bin/python Rscript bench/suite.R
R_LIBS="$LIB" RAYON_NUM_THREADS=1 REPEATS="${REPEATS:-9}" Rscript bench/multi_gpu_scaling.R
R_LIBS="$LIB" Rscript bench/data_path.R
R_LIBS="$LIB" PYTHON=bench/.venv/bin/python Rscript bench/peak_rss.R
R_LIBS="$LIB" REPEATS="${REPEATS:-5}" Rscript bench/multi_worker_scaling.R
R_LIBS="$LIB" REPEATS="${REPEATS:-5}" Rscript bench/measured_split.R
Rscript bench/targets.R
