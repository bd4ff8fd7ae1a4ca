#!/usr/bin/env bash
# Configures and builds parapet. Usage: scripts/build.sh [--sanitize] [--dir DIR]
#   --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build (default dir build-asan)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) dir=build-asan; args=(-DCMAKE_BUILD_TYPE=Debug -DPARAPET_SANITIZE=ON) ;;
    --dir) dir="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
ninja -C "$dir"
