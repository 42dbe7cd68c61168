#!/bin/sh
# Installs what building and testing rustgpu needs on Debian/Ubuntu: R and R packages
# from Debian's archive (CRAN is not needed). Rust (cargo, rustc) must already be there.
set -e
PKGS="r-base-dev python3-venv r-cran-testthat r-cran-roxygen2 r-cran-cli r-cran-rlang r-cran-generics r-cran-magrittr r-cran-jsonlite r-cran-ggplot2 r-cran-zeallot r-cran-r6 r-cran-png r-cran-jpeg pkg-config"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] || {
  echo "setup: cargo not found; install Rust from https://rustup.rs"; exit 1; }
# CMake >= 3.26 builds the HDF5 library linked into rustgpu (configure); Debian bookworm has
# 3.25, so one comes from PyPI into ~/.cache/rustgpu/cmake when no new enough one is around.
cmake_ok() { "$1" --version 2>/dev/null | head -n 1 | awk 'NR == 1 { split($3, v, "."); ok = v[1] > 3 || (v[1] == 3 && v[2] >= 26) } END { exit !ok }'; }
CMAKE_VENV="$HOME/.cache/rustgpu/cmake"
if ! { [ -n "${CMAKE:-}" ] && cmake_ok "$CMAKE"; } && ! cmake_ok cmake && ! cmake_ok "$CMAKE_VENV/bin/cmake"; then
  echo "setup: installing CMake from PyPI into $CMAKE_VENV"
  python3 -m venv "$CMAKE_VENV"
  "$CMAKE_VENV/bin/pip" install -q "cmake>=3.26,<4"
fi
echo "setup: $(R --version | head -n 1)"
