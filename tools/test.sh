#!/bin/sh
# README command 2: set up, then the whole test suite: rustfmt and clippy gates, cargo test,
# R CMD build, and R CMD check --no-manual on the tarball (fails on any ERROR or WARNING).
set -e
cd "$(dirname "$0")/.."
PATH="$PATH:$HOME/.cargo/bin"; export PATH
./tools/setup.sh
. ./tools/cmake-env.sh
# One cargo target dir for the Rust tests and the R package build.
export RUSTGPU_TARGET_DIR="${RUSTGPU_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$RUSTGPU_TARGET_DIR"

echo "== cargo fmt --check, cargo clippy -D warnings (rustgpu-core, rustgpu bindings)"
cargo fetch --locked
./tools/sync-lock.sh --check
cargo fmt --all --check
cargo clippy --release -j 2 --locked --all-targets -p rustgpu-core -p rustgpu -- -D warnings
if command -v mpicc >/dev/null 2>&1; then
  # The MPI layer (multi-worker training) too, as configure builds it where mpicc is found.
  cargo clippy --release -j 2 --locked --all-targets -p rustgpu-core -p rustgpu --features mpi -- -D warnings
fi

echo "== cargo test (rustgpu-core, rustgpu bindings)"
cargo test --release -j 2 --locked -p rustgpu-core -p rustgpu --lib --tests

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "== h5_fuzz: 2,000 mutations of model and weights files saved by rustgpu, each loaded in a child process"
# Fails on any crash, hang or panic in our code; those inside libhdf5 are counted (README, Reliability).
cargo run --release -j 2 --locked -p rustgpu-core --example h5_fuzz -- --ci 2000 "$WORK/fuzz"

echo "== R CMD build"
# CRAN is unreachable here: point repos at an empty local one so check doesn't wait on it.
mkdir -p "$WORK/repo/src/contrib"
: > "$WORK/repo/src/contrib/PACKAGES"
echo "options(repos = c(CRAN = 'file://$WORK/repo'))" > "$WORK/Rprofile"
export R_PROFILE_USER="$WORK/Rprofile"
R CMD build --no-build-vignettes . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
TARBALL="$(ls rustgpu_*.tar.gz | tail -n 1)"
mv "$TARBALL" "$WORK/"

echo "== R CMD check --no-manual $TARBALL"
( cd "$WORK" && R CMD check --no-manual "$TARBALL" ) || {
  cat "$WORK/rustgpu.Rcheck/00check.log"; cat "$WORK"/rustgpu.Rcheck/tests/*.Rout.fail 2>/dev/null; exit 1; }
LOG="$WORK/rustgpu.Rcheck/00check.log"
grep -E "^Status:" "$LOG"
if grep -qE "^Status:.*(ERROR|WARNING)" "$LOG"; then
  grep -B2 -A12 -E "\.\.\. (WARNING|ERROR)" "$LOG"; exit 1
fi
grep -B1 -A8 -E "\.\.\. NOTE" "$LOG" || true
grep -h "hostile inputs" "$WORK"/rustgpu.Rcheck/tests/testthat.Rout || true
grep -h "\[ FAIL" "$WORK"/rustgpu.Rcheck/tests/testthat.Rout || true
echo "== all tests passed"
