#!/usr/bin/env bash
# Installs every Debian 12 package parapet needs to build, test, fuzz and run its demo.
# Idempotent and non-interactive: packages already present are left alone.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds the benchmark peers: nginx, haproxy, varnish, wrk)
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build ccache pkg-config git
  libssl-dev libuv1-dev node-llhttp libluajit2-5.1-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev libre2-dev
  clang-14 libclang-rt-14-dev
  python3 curl openssl procps iproute2
)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(nginx libnginx-mod-http-lua haproxy varnish wrk time util-linux testssl.sh linux-perf)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
