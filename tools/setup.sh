#!/bin/sh
# Installs what building and testing rustgpu needs on Debian/Ubuntu: R and R packages
# from Debian's archive (CRAN is not needed). Rust (cargo, rustc) must already be there.
set -e
PKGS="r-base-dev libopenmpi-dev openmpi-bin python3-venv r-cran-testthat r-cran-roxygen2 r-cran-cli r-cran-rlang r-cran-generics r-cran-magrittr r-cran-jsonlite r-cran-ggplot2 r-cran-zeallot r-cran-r6 r-cran-png r-cran-jpeg r-cran-yaml pkg-config"
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
. "$(dirname "$0")/cmake-env.sh"
if [ -z "${CMAKE:-}" ]; then
  echo "setup: installing CMake from PyPI into $HOME/.cache/rustgpu/cmake"
  python3 -m venv "$HOME/.cache/rustgpu/cmake"
  "$HOME/.cache/rustgpu/cmake/bin/pip" install -q "cmake>=3.26,<4"
fi
echo "setup: $(R --version | head -n 1)"
