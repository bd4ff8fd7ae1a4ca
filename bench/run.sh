#!/usr/bin/env bash
# parapet beside nginx and HAProxy on ../shared/bench (same pinning, same origin, same client).
# Usage: bench/run.sh [extra bench.sh options], e.g. bench/run.sh --workloads a --reps 1
# Needs the benchmark peers: scripts/install-deps.sh --bench
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PARAPET_SHARED:-../shared}
scripts/install-deps.sh --bench
scripts/build.sh >/dev/null
export PARAPET_BIN=$PWD/build/parapet
exec "$shared/bench/bench.sh" --put-peer "$PWD/bench/parapet.peer" \
  --peers "nginx haproxy" --workloads "a b d0 g" "$@"
