#!/usr/bin/env bash
# Installs what is missing, builds parapet, starts the demo origin and runs parapet on the
# bundled config/parapet.yaml in the foreground (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
python3 scripts/demo_origin.py 9000 &
origin=$!
trap 'kill $origin 2>/dev/null || true' EXIT
echo "demo origin on 127.0.0.1:9000 (pid $origin); try: curl -H 'Host: demo.local' http://127.0.0.1:8080/" >&2
build/parapet -c config/parapet.yaml
