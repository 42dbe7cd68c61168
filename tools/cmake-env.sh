# Sourced by the build scripts: points CMAKE (read by the cmake crate that builds HDF5, and by
# configure) at a CMake >= 3.26: $CMAKE, cmake on the PATH, or the one tools/setup.sh installed.
cmake_ok() { "$1" --version 2>/dev/null | head -n 1 | awk 'NR == 1 { split($3, v, "."); ok = v[1] > 3 || (v[1] == 3 && v[2] >= 26) } END { exit !ok }'; }
if ! { [ -n "${CMAKE:-}" ] && cmake_ok "$CMAKE"; }; then
  if cmake_ok cmake; then
    CMAKE="$(command -v cmake)"
  elif cmake_ok "$HOME/.cache/rustgpu/cmake/bin/cmake"; then
    CMAKE="$HOME/.cache/rustgpu/cmake/bin/cmake"
  fi
fi
if [ -n "${CMAKE:-}" ]; then export CMAKE; else unset CMAKE; fi
