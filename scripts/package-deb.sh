#!/usr/bin/env bash
# Builds the Debian package: target/debian/strata_VERSION_ARCH.deb with the `strata` binary,
# systemd units for the server and the agent (their flags in /etc/default/strata-server and
# /etc/default/strata-agent, kept across upgrades), and the operator's docs.
#
#   scripts/package-deb.sh [--binary PATH] [--out DIR] [--compress xz|gzip|none]
#
# Without --binary it builds the release binary first. After `apt install ./strata_*.deb`:
# set the flags in /etc/default/strata-agent (or -server), then
# `systemctl enable --now strata-agent`. docs/operations.md says more.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
binary=""
out="$root/target/debian"
compress=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--compress xz|gzip|none]" >&2; exit 2 ;;
    esac
done
if [ -z "$binary" ]; then
    cargo build --release -p strata-cli --bin strata
    binary="$root/target/release/strata"
fi
command -v dpkg-deb >/dev/null || { echo "dpkg-deb is needed (Debian's dpkg)" >&2; exit 1; }

version=$("$binary" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

install -D -m 0755 "$binary" "$stage/usr/bin/strata"
mkdir -p "$stage/lib/systemd/system" "$stage/etc/default" "$stage/DEBIAN"
for role in server agent; do
    "$binary" install "$role" --for-package --print --binary /usr/bin/strata \
        > "$stage/lib/systemd/system/strata-$role.service"
done
cat > "$stage/etc/default/strata-server" <<'EOF'
# Flags of `strata server` for the strata-server service (`strata server --help`).
# Give --store etcd://.../NAMESPACE for a fleet of servers; ports: docs/operations.md.
STRATA_SERVER_FLAGS="--data-dir /var/lib/strata/server --api-addr 0.0.0.0:7700"
EOF
cat > "$stage/etc/default/strata-agent" <<'EOF'
# Flags of `strata agent` for the strata-agent service (`strata agent --help`).
# The join token (`strata server token` on a server) goes in /etc/strata/join-token, 0600.
STRATA_AGENT_FLAGS="--join https://SERVER:7700 --token-file /etc/strata/join-token --advertise-addr NODE_IP --data-dir /var/lib/strata/agent"
EOF
for doc in README.md docs/operations.md docs/architecture.md; do
    install -D -m 0644 "$root/$doc" "$stage/usr/share/doc/strata/$(basename "$doc")"
done

# The shared libraries the binary links, as the Debian packages that hold them.
# (dpkg knows a file by the path its package installed it at: /lib or /usr/lib.)
owner() {
    local path=$1 real
    real=$(realpath "$path")
    for candidate in "$path" "$real" "/usr$path" "${path#/usr}" "/usr$real" "${real#/usr}"; do
        if dpkg -S "$candidate" 2>/dev/null | cut -d: -f1 | head -1; then return 0; fi
    done
    echo "cannot tell which package holds $path; left out of Depends" >&2
}
depends=$(for lib in $(ldd "$binary" | awk '/=>/ {print $3}'); do owner "$lib"; done \
    | grep -v '^$' | sort -u | paste -sd, | sed 's/,/, /g' || true)
cat > "$stage/DEBIAN/control" <<EOF
Package: strata
Version: $version
Architecture: $arch
Maintainer: Strata developers <strata@localhost>
Section: admin
Priority: optional
Depends: ${depends:-libc6}
Recommends: iproute2, nftables
Installed-Size: $(du -sk "$stage" | cut -f1)
Description: single-binary service delivery platform
 Strata runs services (exec, wasm and container drivers) on many small nodes:
 discovery, balancing, mTLS and policy in the platform, failover within a
 second, autoscaling, releases and rollback. This package has the strata
 binary and systemd units for its server and its node agent.
EOF
printf '/etc/default/strata-server\n/etc/default/strata-agent\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
mkdir -p /var/lib/strata/server /var/lib/strata/agent /etc/strata
chmod 0700 /var/lib/strata/server /var/lib/strata/agent /etc/strata
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade: a running agent hands its node to the new binary (no request fails, no
    # instance restarts); a running server restarts (it gives up the lead first).
    if [ "$1" = configure ] && [ -n "${2:-}" ]; then
        if systemctl is-active --quiet strata-agent; then systemctl reload strata-agent || true; fi
        systemctl try-restart strata-server || true
    fi
fi
EOF
cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
# On removal the services stop (an agent leaves gracefully: its instances move first).
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop strata-agent strata-server 2>/dev/null || true
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"

mkdir -p "$out"
package="$out/strata_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$package" >/dev/null
echo "$package"
