#!/usr/bin/env bash
# Cost of the access log (and of the metrics, against an older build without them) on
# workload a of ../shared/bench: HTTP/1.1 keep-alive, 1 KiB, proxy pinned to CPU 1, wrk and
# the epoll origin on CPU 0. Variants run in rotation, REPS times, DURATION s each; prints
# CPU-seconds per 10k requests per run (utime+stime of parapet from /proc).
# Usage: bench/log_cost.sh [BASELINE_BIN] (default: no baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PARAPET_SHARED:-../shared}
REPS=${REPS:-3} DURATION=${DURATION:-8}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
gcc -O2 -o "$work/epoll_http" "$shared/bench/limit/epoll_http.c"
taskset -c 0 "$work/epoll_http" -p 19401 >/dev/null 2>&1 &
conf() {  # $1 = with log (1/0)
  sed -e 's/@PORT@/19402/; s/@ADMIN_PORT@/19403/; s/@HOST@/localhost/; s/@ORIGIN@/127.0.0.1:19401/' \
    bench/conf/default.yaml.in
  [ "$1" = 1 ] && printf 'access_log:\n  path: %s/access.log\n' "$work"
  true
}
conf 0 > "$work/off.yaml"; conf 1 > "$work/on.yaml"
variants=("log-off build/parapet $work/off.yaml" "log-on build/parapet $work/on.yaml")
[ -n "${1:-}" ] && variants+=("baseline $1 $work/off.yaml")
for rep in $(seq "$REPS"); do
  for v in "${variants[@]}"; do
    read -r name bin cfg <<<"$v"
    taskset -c 1 "$bin" -c "$cfg" 2>/dev/null &
    pid=$!
    sleep 0.5
    taskset -c 0 wrk -t1 -c64 -d1s -H 'Host: localhost' http://127.0.0.1:19402/1k >/dev/null
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    n=$(taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" -H 'Host: localhost' http://127.0.0.1:19402/1k |
        awk '/requests in/{print $1}')
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    hz=$(getconf CLK_TCK)
    awk -v n="$n" -v t=$((t1 - t0)) -v hz="$hz" -v name="$name" -v rep="$rep" \
      'BEGIN{printf "%-9s rep %d: %8d req, %.4f CPU-s/10k\n", name, rep, n, t/hz/n*10000}'
  done
done
