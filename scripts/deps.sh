#!/usr/bin/env bash
# Installs the Debian packages Strata needs, if missing:
#   scripts/deps.sh build   protoc (the etcd client's gRPC code is generated at build time),
#                            libseccomp-dev and pkg-config (the container runtime's seccomp)
#   scripts/deps.sh test    + etcd (HA tests start real etcd members), iproute2 (cluster
#                            tests put nodes in network namespaces), nftables (the container
#                            network's isolation), redis (the container example packages
#                            Debian's redis-server), python3 (code shipped with a command:
#                            docs/spec.md's `command = ["python3", "app.py"]`), e2fsprogs
#                            (the forensics tests wipe loop-mounted ext4 images)
#   scripts/deps.sh containers  the build's, nftables, iproute2 (what `strata dev` needs to
#                            run container services)
#   scripts/deps.sh bench   + wrk (the load generator of the benchmarks), runc (the
#                            container start benchmark's peer), nginx (the mesh proxy
#                            benchmark's peer) and zstd (the forensic archive benchmark's)
set -euo pipefail
want=(protobuf-compiler libseccomp-dev pkg-config)
case "${1:-build}" in
  test) want+=(etcd-server iproute2 nftables redis-server redis-tools python3 e2fsprogs) ;;
  containers) want+=(nftables iproute2) ;;
  bench) want+=(etcd-server iproute2 runc nftables redis-server redis-tools python3 wrk nginx zstd) ;;
esac

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: please install: ${missing[*]} (Debian/Ubuntu package names)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "==> installing ${missing[*]}"
$sudo apt-get install -y -q "${missing[@]}" >/dev/null || {
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}
