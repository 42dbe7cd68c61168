#!/bin/sh
# README command 1: set up, build and install rustgpu, run the iris demo.
set -e
cd "$(dirname "$0")/.."
PATH="$PATH:$HOME/.cargo/bin"; export PATH
./tools/setup.sh
LIB="${RUSTGPU_LIB:-$PWD/.rlib}"
mkdir -p "$LIB"
export RUSTGPU_TARGET_DIR="${RUSTGPU_TARGET_DIR:-$PWD/target}"
R CMD INSTALL --no-test-load -l "$LIB" . >/tmp/rustgpu-install.log 2>&1 || { tail -n 40 /tmp/rustgpu-install.log; exit 1; }
R_LIBS="$LIB" Rscript inst/examples/iris.R
