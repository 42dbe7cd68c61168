#!/bin/sh
# The tarball builds src/rust/r as a standalone crate, which reads src/rust/r/Cargo.lock.
# Keep it identical to the workspace lock; `--check` fails when they differ, or when the
# standalone crate would resolve another lock (a dev-dependency or optional dependency of
# the core crate is in the workspace lock only, and `cargo build --locked` then fails).
set -e
cd "$(dirname "$0")/.."
if [ "$1" = "--check" ]; then
  cmp -s Cargo.lock src/rust/r/Cargo.lock || { echo "src/rust/r/Cargo.lock differs from Cargo.lock: run tools/sync-lock.sh"; exit 1; }
  TMP="$(mktemp -d)"
  trap 'rm -rf "$TMP"' EXIT
  mkdir -p "$TMP/src/rust"
  cp -r src/rust/core src/rust/r "$TMP/src/rust/"
  rm -rf "$TMP/src/rust/r/target" "$TMP/src/rust/core/target"
  cargo metadata --locked --offline --format-version 1 --manifest-path "$TMP/src/rust/r/Cargo.toml" >/dev/null 2>"$TMP/err" || {
    cat "$TMP/err"
    echo "the package's standalone crate (src/rust/r) resolves a different lock than the workspace: keep"
    echo "dev-dependencies and optional dependencies out of src/rust/core, or put them in src/rust/r too"
    exit 1
  }
else
  cp Cargo.lock src/rust/r/Cargo.lock
fi
