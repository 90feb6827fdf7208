#!/usr/bin/env bash
# Builds the hello-wasm guest for wasm32-wasip2 (release):
#   build/hello.wasm      the wasi:http/proxy component Strata serves
#   build/hello-cli.wasm  a wasi:cli/command component (the driver's tests check it is refused)
# Installs the wasm32-wasip2 target with rustup first if it is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "==> rustup target add wasm32-wasip2" >&2
  rustup target add wasm32-wasip2
fi

cargo build --locked --release --target wasm32-wasip2 --target-dir target ${CARGO_BUILD_QUIET:+--quiet}
mkdir -p build
cp target/wasm32-wasip2/release/hello_wasm.wasm build/hello.wasm.tmp
mv build/hello.wasm.tmp build/hello.wasm
cp target/wasm32-wasip2/release/hello-cli.wasm build/hello-cli.wasm.tmp
mv build/hello-cli.wasm.tmp build/hello-cli.wasm
echo "built $(pwd)/build/hello.wasm ($(wc -c < build/hello.wasm) bytes)" >&2
