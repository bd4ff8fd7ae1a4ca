#!/usr/bin/env bash
# Installs what is missing, builds parapet and runs the whole test suite with ctest: unit tests,
# integration tests (real binary, real origins, loopback only) and the fuzz corpus replay.
# Usage: scripts/test.sh [--sanitize]   (ASan+UBSan build in build-asan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
dir=build
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  scripts/build.sh --sanitize
  # The big streaming tests are slow under ASan: keep them meaningful but smaller.
  export PARAPET_TEST_BIG_MB=${PARAPET_TEST_BIG_MB:-256}
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
  scripts/build.sh
fi
ctest --test-dir "$dir" --output-on-failure -j2
