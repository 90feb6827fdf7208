#!/usr/bin/env bash
# Builds the container examples' images with Strata's own image builder and saves them where
# strata.toml expects them:
#   build/hello.tar   examples/hello (a native Rust HTTP server) packaged with --jeos:
#                     the binary, its ELF interpreter and shared libraries, nothing else
#   build/redis.tar   Debian's redis-server packaged with --jeos (skipped, with a note, when
#                     redis-server is not installed: apt-get install redis-server)
# Usage: build.sh [STRATA_BINARY] [HELLO_BINARY]   (defaults: target/release/{strata,hello})
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
strata="${1:-$root/target/release/strata}"
hello="${2:-$root/target/release/hello}"
for f in "$strata" "$hello"; do
  [ -x "$f" ] || { echo "build.sh: $f is missing; build it first (cargo build --release -p strata-cli -p hello)" >&2; exit 1; }
done
export STRATA_IMAGES="$here/build/images"
mkdir -p "$here/build"
"$strata" image build --jeos "$hello" --tag hello:1 2>/dev/null
"$strata" image save hello:1 -o "$here/build/hello.tar"
if command -v redis-server >/dev/null 2>&1; then
  "$strata" image build --jeos "$(command -v redis-server)" --tag redis:1 2>/dev/null
  "$strata" image save redis:1 -o "$here/build/redis.tar"
else
  echo "build.sh: redis-server is not installed; skipping build/redis.tar (apt-get install redis-server)" >&2
fi
