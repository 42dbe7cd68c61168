#!/bin/sh
# Regenerates R/extendr-wrappers.R from the Rust module, then NAMESPACE and man/ with roxygen2.
set -e
cd "$(dirname "$0")/.."
cargo run --release -j 2 --quiet -p rustgpu --bin document
Rscript -e 'roxygen2::roxygenise(load_code = "source")'
