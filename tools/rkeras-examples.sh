#!/bin/sh
# Runs published R keras 2.x scripts with rustgpu: `library(keras)` becomes
# `library(rustgpu)` (and `keras::` `rustgpu::`: the package's name), epochs are capped at 1, and data sets come from a stand-in cache
# (tools/fake-keras-cache.py; hashes not checked). Prints, for each script, "ok" or its first
# error. R keras's own scripts are not part of this project: point it at a local copy, e.g.
#   git -C <clone of rstudio/keras> archive 2.2.5.0 vignettes | tar -x -C /tmp/rkeras
#   tools/rkeras-examples.sh /tmp/rkeras/vignettes/examples/mnist_mlp.R ...
# Needs the package installed (R CMD INSTALL) and .venv-keras (tools/keras-venv.sh).
set -e
cd "$(dirname "$0")/.."
CACHE="${RKERAS_CACHE:-/tmp/rustgpu-fake-keras}"
[ -f "$CACHE/datasets/mnist.npz" ] && [ -f "$CACHE/models/imagenet_class_index.json" ] || .venv-keras/bin/python tools/fake-keras-cache.py "$CACHE"
LIB="${R_LIBS_RUSTGPU:-$PWD/.rlib}"
OUT="$(mktemp -d)"
# Files that scripts download themselves (stand-ins made by fake-keras-cache.py).
[ -d "$CACHE/work" ] && cp -r "$CACHE/work/." "$OUT/"
# deep_dream.R reads its picture from this absolute path.
[ -f /tmp/mypic.jpg ] || { [ -f "$CACHE/work/elephant.jpg" ] && cp "$CACHE/work/elephant.jpg" /tmp/mypic.jpg; }
for script in "$@"; do
  name=$(basename "$script")
  {
    echo ".libPaths(c('$LIB', .libPaths())); Sys.setenv(KERAS_HOME = '$CACHE'); options(rustgpu.check_dataset_hashes = FALSE)"
    sed -e 's/library(keras)/library(rustgpu)/' -e 's/keras::/rustgpu::/g' -e 's/epochs *= *[0-9][0-9]*/epochs = 1/g' -e 's/^epochs *<- *[0-9][0-9]*/epochs <- 1/' "$script"
  } > "$OUT/$name"
  if (cd "$OUT" && timeout "${RKERAS_TIMEOUT:-600}" Rscript "$name" > "$OUT/$name.log" 2>&1); then
    echo "ok    $name"
  else
    echo "FAIL  $name: $(grep -m1 -A1 '^Error' "$OUT/$name.log" | tr '\n' ' ' | cut -c1-220)"
  fi
done
echo "logs in $OUT"
