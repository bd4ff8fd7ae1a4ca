#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 and runs each for a short while over its corpus.
# Usage: scripts/fuzz.sh [seconds per target, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
secs=${1:-30}
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPARAPET_FUZZ=ON -DPARAPET_TESTS=OFF >/dev/null
ninja -C build-fuzz
for f in fuzz/*_fuzz.cc; do
  t=$(basename "$f" _fuzz.cc)
  work=$(mktemp -d)
  build-fuzz/fuzz/${t}_fuzz -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    "$work" "fuzz/corpus/$t" 2>&1 | tail -n 3
  rm -rf "$work"
done
