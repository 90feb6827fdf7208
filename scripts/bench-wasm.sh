#!/usr/bin/env bash
# The wasm benchmark (docs/benchmarks.md): hello-wasm under Strata against `wasmtime serve`.
# Installs what it needs first: wrk (Debian), wasmtime-cli 48 (cargo install, into
# ~/.cache/strata-bench; a release build of the wasmtime stack, ~10 min the first time), and
# builds the hello-wasm guest. Extra arguments go to the bench (e.g. the number of runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
tools="${STRATA_BENCH_TOOLS:-$HOME/.cache/strata-bench}"
if [ ! -x "$tools/bin/wasmtime" ]; then
  echo "==> cargo install wasmtime-cli 48 into $tools (once)" >&2
  cargo install --locked --root "$tools" wasmtime-cli --version '~48'
fi
bash examples/hello-wasm/build.sh
WASMTIME="$tools/bin/wasmtime" cargo bench --locked -p strata-cli --bench wasm -- "$@"
