# Shared by bench/rules_cost.sh and bench/lua_cost.sh (sourced): the epoll origin of
# ../shared/bench pinned to CPU 0, and a one-worker parapet config in front of it.
# Needs: $shared (../shared), $work (a scratch folder), $ORIGIN_PORT, $PROXY_PORT.

# Builds and starts the origin; its pid goes to the caller's cleanup through $origin_pid.
start_origin() {
  gcc -O2 -o "$work/epoll_http" "$shared/bench/limit/epoll_http.c"
  taskset -c 0 "$work/epoll_http" -p "$ORIGIN_PORT" >/dev/null 2>&1 &
  origin_pid=$!
}

# A parapet config: one worker, one tenant `bench` for Host localhost proxying everything to
# the origin; $1 is an extra line of the tenant (policies, lua), or nothing.
parapet_conf() {
  cat <<YAML
workers: 1
listeners:
  - {name: http, address: "127.0.0.1:$PROXY_PORT"}
timeouts: {keepalive: 300s}
tenants:
  - name: bench
    hosts: [localhost]
    ${1:-}
    origins:
      - name: origin
        servers: ["127.0.0.1:$ORIGIN_PORT"]
        keepalive: {max_idle: 128, idle_timeout: 300s}
    routes:
      - {path: /, origin: origin}
YAML
}
