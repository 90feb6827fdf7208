#!/usr/bin/env bash
# Runs Strata's whole test suite: unit, integration and end-to-end tests (the end-to-end ones
# start the real `strata` binary and the example service as processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
echo "==> building the example wasm guest (wasm32-wasip2)"
bash examples/hello-wasm/build.sh
echo "==> building binaries the end-to-end tests start"
cargo build --locked --workspace --bins
echo "==> running the tests"
# The servers the tests start record the CLI's contexts (which token for which API) here,
# not in the user's own configuration.
STRATA_CONFIG_DIR="$(mktemp -d)"
export STRATA_CONFIG_DIR
trap 'rm -rf "$STRATA_CONFIG_DIR"' EXIT
cargo test --locked --workspace --all-features -- "$@"
