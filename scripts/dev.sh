#!/usr/bin/env bash
# Sets up Strata on this machine and runs its main job: `strata dev` with the examples
# deployed (examples/hello, an exec service; examples/hello-wasm, two wasm services; and, when
# run as root, examples/hello-container, the exec example packaged with --jeos as a
# container). Ctrl-C stops everything.
#
#   ./scripts/dev.sh            # data in ./.strata, API on 127.0.0.1:7700, ingress on :8080
#
# Needs: a Rust toolchain (rustup) and a C compiler (Debian: build-essential). Installs protoc
# (Debian's protobuf-compiler) if missing, with sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

API_ADDR=${STRATA_API_ADDR:-127.0.0.1:7700}
INGRESS_ADDR=${STRATA_INGRESS_ADDR:-127.0.0.1:8080}
HTTPS_ADDR=${STRATA_HTTPS_ADDR:-127.0.0.1:8443}
DATA_DIR=${STRATA_DATA_DIR:-.strata}

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is missing. $2" >&2; exit 1; }; }
need cargo "Install Rust from https://rustup.rs (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh)."
need cc "Install a C compiler: sudo apt-get install -y build-essential"
need curl "Install curl: sudo apt-get install -y curl"

bash scripts/deps.sh build
containers=""
if [ "$(id -u)" = 0 ]; then
  # Containers need root, runc, iproute2 and nftables.
  bash scripts/deps.sh containers && containers=1
else
  echo "note: not root, so the container example is skipped (containers need namespaces and cgroups)" >&2
fi
echo "==> building strata and the example service (release; the first build takes a few minutes)"
cargo build --release --locked -p strata-cli -p hello
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo target)
mkdir -p examples/hello/build
cp "$target_dir/release/hello" examples/hello/build/hello
strata="$target_dir/release/strata"
echo "==> building the wasm example (adds the wasm32-wasip2 target with rustup if missing)"
CARGO_BUILD_QUIET=1 bash examples/hello-wasm/build.sh

echo "==> starting strata dev (data in $DATA_DIR)"
"$strata" dev --data-dir "$DATA_DIR" --api-addr "$API_ADDR" --ingress-addr "$INGRESS_ADDR" --https-addr "$HTTPS_ADDR" &
dev_pid=$!
trap 'kill -TERM $dev_pid 2>/dev/null; wait $dev_pid 2>/dev/null' INT TERM EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://$API_ADDR/healthz" >/dev/null 2>&1 && break
  kill -0 $dev_pid 2>/dev/null || { echo "strata dev exited; see the messages above" >&2; exit 1; }
  sleep 0.1
done

echo "==> deploying examples/hello/strata.toml"
url=$(STRATA_ADDR="http://$API_ADDR" "$strata" deploy examples/hello/strata.toml --env dev)
echo "==> deploying examples/hello-wasm/strata.toml"
STRATA_ADDR="http://$API_ADDR" "$strata" deploy examples/hello-wasm/strata.toml --env dev >/dev/null
if [ -n "$containers" ]; then
  echo "==> building and deploying examples/hello-container (strata image build --jeos)"
  bash examples/hello-container/build.sh "$strata" "$target_dir/release/hello" >/dev/null
  STRATA_ADDR="http://$API_ADDR" "$strata" deploy examples/hello-container/strata.toml --env dev >/dev/null
fi
ingress_port=${INGRESS_ADDR##*:}
echo
echo "The example is served at $url"
echo "  try:  curl $url"
echo "        curl ${url}call/backend   (hello calling a private service by name, through the mesh)"
echo "        curl http://greeter.dev.localhost:$ingress_port/            (wasm)"
echo "        curl http://front.dev.localhost:$ingress_port/call/greeter  (wasm calling wasm by name)"
[ -n "$containers" ] && echo "        curl http://hello-container.dev.localhost:$ingress_port/   (a container)"
echo "        curl --cacert $DATA_DIR/ingress-ca.crt https://hello.dev.localhost:${HTTPS_ADDR##*:}/   (HTTPS, HTTP/2)"
echo "        $strata status   (STRATA_ADDR=http://$API_ADDR)"
echo "Ctrl-C stops strata dev and its instances."
wait $dev_pid
