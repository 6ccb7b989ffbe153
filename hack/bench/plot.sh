#!/usr/bin/env bash
# Plots make bench's results (CPU, peak RSS and p99 latency against N, operator and
# baseline) into a PNG, with matplotlib from PyPI in a venv under target/bench.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/bench/venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet matplotlib
fi
"$venv/bin/python" "$root/hack/bench/plot.py" "$@"
