#!/usr/bin/env bash
# Per-request cost of a typical 10-line tenant access script (bench/lua/edge_access.lua: header
# checks, a regex, an ngx.shared incr), in parapet and in nginx with lua-nginx-module running
# the same file unchanged (access_by_lua_file), on workload a of ../shared/bench (HTTP/1.1
# keep-alive, 1 KiB from the epoll origin; proxy pinned to CPU 1, wrk and the origin on CPU 0).
# Four variants in rotation, REPS times, DURATION s each: parapet and nginx, each without and
# with the script. Prints CPU-seconds per 10k requests per run and the medians, then the
# script's cost per request (with - without) for each proxy.
# Usage: bench/lua_cost.sh            (needs: scripts/install-deps.sh --bench)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PARAPET_SHARED:-../shared}
REPS=${REPS:-3} DURATION=${DURATION:-8}
script=$PWD/bench/lua/edge_access.lua
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
ORIGIN_PORT=19501 PROXY_PORT=19502
source bench/lib.sh
start_origin
pids+=("$origin_pid")
nginx_conf() {  # $1: the location's access line, or nothing
  cat <<CONF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
user root;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work;
    proxy_temp_path $work;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    lua_shared_dict hits 1m;
    upstream origin { server 127.0.0.1:19501; keepalive 128; }
    server {
        listen 127.0.0.1:19502 backlog=4096;
        location / {
            ${1:-}
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
}
parapet_conf > "$work/p-none.yaml"
parapet_conf "lua: {access: $script, shared_dicts: {hits: 1MiB}}" > "$work/p-lua.yaml"
nginx_conf > "$work/n-none.conf"
nginx_conf "access_by_lua_file $script;" > "$work/n-lua.conf"
build/parapet --check -c "$work/p-lua.yaml" >/dev/null
nginx -t -q -c "$work/n-lua.conf"
start() {  # $1: variant -> prints the pid to measure
  case $1 in
    parapet-*) taskset -c 1 build/parapet -c "$work/p-${1#parapet-}.yaml" >/dev/null 2>&1 & echo $! ;;
    nginx-*) taskset -c 1 nginx -c "$work/n-${1#nginx-}.conf" -g "daemon off;" >/dev/null 2>&1 & echo $! ;;
  esac
}
hz=$(getconf CLK_TCK)
results=$work/results
for rep in $(seq "$REPS"); do
  for v in parapet-none parapet-lua nginx-none nginx-lua; do
    pid=$(start "$v")
    pids+=("$pid")
    sleep 0.7
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost' -A bench http://127.0.0.1:19502/1k)
    [ "$code" = 200 ] || { echo "$v answered $code" >&2; exit 1; }
    taskset -c 0 wrk -t1 -c64 -d1s -H 'Host: localhost' -H 'User-Agent: wrk' http://127.0.0.1:19502/1k >/dev/null
    # nginx: the worker is the master's child; count the whole tree.
    cpu() { local t=0 p; for p in $1 $(pgrep -P "$1"); do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
    t0=$(cpu "$pid")
    out=$(taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" -H 'Host: localhost' -H 'User-Agent: wrk' http://127.0.0.1:19502/1k)
    t1=$(cpu "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    n=$(awk '/requests in/{print $1}' <<<"$out")
    bad=$(awk '/Non-2xx/{print $NF}' <<<"$out")
    [ -z "$bad" ] || { echo "$v: $bad non-2xx answers" >&2; exit 1; }
    awk -v n="$n" -v t=$((t1 - t0)) -v hz="$hz" -v v="$v" -v rep="$rep" -v d="$DURATION" \
      'BEGIN{c=t/hz/n*10000; printf "%-13s rep %d: %8d req (%.0f/s), %.4f CPU-s/10k\n", v, rep, n, n/d, c; printf "%s %f\n", v, c >> "'"$results"'"}'
  done
done
python3 - "$results" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    v, c = line.split()
    runs[v].append(float(c))
m = {v: statistics.median(c) for v, c in runs.items()}
for v in ("parapet-none", "parapet-lua", "nginx-none", "nginx-lua"):
    print(f"{v:13s} median {m[v]:.4f} CPU-s/10k = {m[v] * 100:.1f} us/request")
p, n = (m["parapet-lua"] - m["parapet-none"]) * 100, (m["nginx-lua"] - m["nginx-none"]) * 100
print(f"script cost per request: parapet {p:.2f} us (+{p / (m['parapet-none'] * 100):.0%}), "
      f"nginx+lua {n:.2f} us (+{n / (m['nginx-none'] * 100):.0%})")
print(f"with the script, parapet/nginx CPU per request: {m['parapet-lua'] / m['nginx-lua']:.2f}")
PY
