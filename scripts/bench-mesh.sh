#!/usr/bin/env bash
# The mesh proxy benchmark (docs/benchmarks.md): latency added by one and two proxy hops and
# their throughput, against a direct connection and nginx, in one run. Installs what it needs
# first: nginx (Debian) and oha (cargo install, into ~/.cache/strata-bench, once). Extra
# arguments go to the bench (the seconds per run, default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
tools="${STRATA_BENCH_TOOLS:-$HOME/.cache/strata-bench}"
if [ ! -x "$tools/bin/oha" ]; then
  echo "==> cargo install oha into $tools (once)" >&2
  cargo install --locked --root "$tools" oha
fi
OHA="$tools/bin/oha" cargo bench --locked -p strata-mesh --bench proxy -- "$@"
