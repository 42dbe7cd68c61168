#!/bin/sh
# The tarball builds src/rust/r as a standalone crate, which reads src/rust/r/Cargo.lock.
# Keep it identical to the workspace lock; `--check` fails when they differ.
set -e
cd "$(dirname "$0")/.."
if [ "$1" = "--check" ]; then
  cmp -s Cargo.lock src/rust/r/Cargo.lock || { echo "src/rust/r/Cargo.lock differs from Cargo.lock: run tools/sync-lock.sh"; exit 1; }
else
  cp Cargo.lock src/rust/r/Cargo.lock
fi
