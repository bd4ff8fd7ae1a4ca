#!/usr/bin/env bash
# Cost of the policy engine on workload a of ../shared/bench (HTTP/1.1 keep-alive, 1 KiB,
# proxy pinned to CPU 1, wrk and the epoll origin on CPU 0): parapet with no rules against
# parapet with a shared policy of N typical rules (mixed eq, contains, matches, in-list,
# wildcard, header lookups; none matches, as for most real traffic, so every rule is
# evaluated). Variants run in rotation, REPS times, DURATION s each; prints CPU-seconds per
# 10k requests per run (utime+stime of parapet from /proc) and req/s.
# Usage: bench/rules_cost.sh [N rules, default 100]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PARAPET_SHARED:-../shared}
N=${1:-100} REPS=${REPS:-3} DURATION=${DURATION:-8}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ORIGIN_PORT=19401 PROXY_PORT=19402
source bench/lib.sh
start_origin
rules() {  # a shared policy of $N rules attached to the tenant
  python3 - "$N" "$work" <<'PY'
import sys, random
n, work = int(sys.argv[1]), sys.argv[2]
random.seed(1)
with open(f"{work}/ips.txt", "w") as f:
    for i in range(1000):
        f.write(f"10.{i // 250}.{i % 250}.0/24\n")
kinds = [
    lambda i: f'http.host eq "blocked{i}.example"',
    lambda i: f'http.user_agent contains "scanner{i}"',
    lambda i: f'http.request.uri.path matches "^/admin{i}/[a-z]+\\\\.php$"',
    lambda i: f'ip.src in $bad_ips and http.request.uri.path eq "/x{i}"',
    lambda i: f'http.request.uri.path wildcard "/private{i}/*"',
    lambda i: f'starts_with(http.request.uri.path, "/internal{i}/")',
    lambda i: f'any(http.request.headers["x-debug"][*] eq "{i}")',
    lambda i: f'http.request.method eq "DELETE" and http.request.uri.path contains "/v{i}/"',
    lambda i: f'lower(http.request.uri.query) contains "union{i}"',
    lambda i: f'http.cookie contains "session=evil{i}"',
]
print(f"lists:\n  - {{name: bad_ips, kind: ip, file: {work}/ips.txt}}")
print("policies:\n  - name: bench\n    rules:")
for i in range(n):
    expr = kinds[i % len(kinds)](i).replace("'", "''")
    print(f"      - id: r{i}\n        expression: '{expr}'\n        action: block")
PY
}
parapet_conf > "$work/none.yaml"
{ rules; parapet_conf "policies: [bench]"; } > "$work/rules.yaml"
build/parapet --check -c "$work/rules.yaml" >/dev/null
variants=("none $work/none.yaml" "rules$N $work/rules.yaml")
for rep in $(seq "$REPS"); do
  for v in "${variants[@]}"; do
    read -r name cfg <<<"$v"
    taskset -c 1 build/parapet -c "$cfg" 2>/dev/null &
    pid=$!
    sleep 0.5
    taskset -c 0 wrk -t1 -c64 -d1s -H 'Host: localhost' http://127.0.0.1:19402/1k >/dev/null
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$(taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" -H 'Host: localhost' http://127.0.0.1:19402/1k)
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    n=$(awk '/requests in/{print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out")
    hz=$(getconf CLK_TCK)
    awk -v n="$n" -v t=$((t1 - t0)) -v hz="$hz" -v name="$name" -v rep="$rep" -v d="$DURATION" \
      -v bad="${non2xx:-0}" \
      'BEGIN{printf "%-9s rep %d: %8d req (%.0f/s), %.4f CPU-s/10k, non-2xx %d\n", name, rep, n, n/d, t/hz/n*10000, bad}'
  done
done
