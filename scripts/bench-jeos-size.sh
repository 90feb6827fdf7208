#!/usr/bin/env bash
# JEOS image sizes against a debootstrap minbase root (docs/benchmarks.md).
# Builds `strata image build --jeos` images of the example service and of Debian's
# redis-server, and measures a `debootstrap --variant=minbase` root of the same Debian release
# (made once into ~/.cache/strata-bench/minbase; needs root and the Debian mirror).
# Usage: scripts/bench-jeos-size.sh [STRATA_BINARY] [HELLO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
strata="${1:-target/release/strata}"
hello="${2:-target/release/hello}"
tools="${STRATA_BENCH_TOOLS:-$HOME/.cache/strata-bench}"
minbase="$tools/minbase"
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
if [ ! -x "$minbase/bin/sh" ]; then
  . /etc/os-release
  echo "==> debootstrap --variant=minbase $VERSION_CODENAME (once)" >&2
  debootstrap --variant=minbase "$VERSION_CODENAME" "$minbase" http://deb.debian.org/debian >/dev/null
fi
images=$(mktemp -d); trap 'rm -rf "$images"' EXIT
export STRATA_IMAGES="$images"
tar_bytes() { tar -C "$1" --exclude "$2" -cf - . | wc -c; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
printf '| root | files | size as a tar (MiB) |\n|---|---:|---:|\n'
for program in "$hello" "$(command -v redis-server || true)"; do
  [ -n "$program" ] || continue
  name=$(basename "$program")
  "$strata" image build --jeos "$program" --tag "$name:size" >/dev/null 2>&1 || { echo "cannot build $name with $strata (is it current? cargo build --release -p strata-cli)" >&2; exit 1; }
  "$strata" image save "$name:size" -o "$images/$name.tar" >/dev/null
  root="$images/root-$name"; mkdir -p "$root"
  for layer in $("$strata" image inspect "$name:size" | python3 -c 'import json,sys; print(" ".join(l["digest"].split(":")[1] for l in json.load(sys.stdin)["manifest"]["layers"]))'); do
    tar -C "$root" -xf "$images/blobs/sha256/$layer"
  done
  printf '| `--jeos %s` | %s | %s |\n' "$name" "$(find "$root" -type f | wc -l)" "$(mib "$(tar_bytes "$root" ./nothing)")"
done
all=$(tar_bytes "$minbase" ./nothing)
lean=$(tar -C "$minbase" --exclude ./var/cache/apt --exclude ./var/lib/apt/lists -cf - . | wc -c)
printf '| debootstrap --variant=minbase | %s | %s |\n' "$(find "$minbase" -type f | wc -l)" "$(mib "$all")"
printf '| minbase without apt caches and lists | %s | %s |\n' "$(find "$minbase" -type f -not -path '*/var/cache/apt/*' -not -path '*/var/lib/apt/lists/*' | wc -l)" "$(mib "$lean")"
