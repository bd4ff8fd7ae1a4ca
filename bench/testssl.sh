#!/usr/bin/env bash
# testssl.sh against parapet's TLS listener (throwaway ECDSA certificate): protocols, cipher
# categories and known vulnerabilities. Usage: bench/testssl.sh [--no-tickets]
# (needs scripts/install-deps.sh --bench). --no-tickets: a listener without session tickets,
# where parapet's own TLS 1.3 handshake answers (proxy/tls13_server.h).
set -euo pipefail
cd "$(dirname "$0")/.."
listener_tls="{}"
[[ "${1:-}" == "--no-tickets" ]] && listener_tls="{session_tickets: false}"
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/k.pem" \
  -out "$work/c.pem" -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 2 2>/dev/null
cat > "$work/t.yaml" <<YAML
workers: 1
listeners: [{name: https, address: "127.0.0.1:19443", tls: $listener_tls}]
tenants:
  - name: t
    hosts: [localhost]
    tls: {certificates: [{cert: $work/c.pem, key: $work/k.pem}]}
    origins: [{name: o, servers: ["127.0.0.1:19999"]}]
    routes: [{path: /, origin: o}]
YAML
build/parapet -c "$work/t.yaml" 2>/dev/null &
pid=$!
sleep 0.5
testssl --quiet --color 0 --warnings off -p -s -U -S localhost:19443
