#!/usr/bin/env bash
# The container engine, with the flags this project's machines need kept in one place.
#
#   hack/container.sh install        install podman and runc from Debian when missing
#   hack/container.sh ARGS...        run the engine: `hack/container.sh images`, `... build ...`
#
# CONTAINER_ENGINE picks the engine: podman (the default) or docker. With podman, every
# command gets PODMAN_FLAGS, by default `--storage-driver vfs --runtime runc`, what this
# project's machines need (images stay in podman's default storage, so
# `podman --storage-driver vfs image inspect NAME` finds them; crun fails there with
# "cgroups in hybrid mode not supported", and overlay needs a kernel and filesystem they
# may lack). A podman whose storage already uses overlay refuses vfs ("database
# configuration mismatch"): set PODMAN_FLAGS= (empty) to use your own configuration.
# `run`, `create` and `build` get explicit ulimits (podman's defaults fail setrlimit
# there). Docker gets the arguments as they are.
set -euo pipefail
engine=${CONTAINER_ENGINE:-podman}
read -r -a global <<<"${PODMAN_FLAGS---storage-driver vfs --runtime runc}"

install() {
  if [[ $engine != podman ]]; then
    command -v "$engine" >/dev/null || { echo "container: $engine is not installed (CONTAINER_ENGINE=$engine)" >&2; exit 1; }
    return
  fi
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  local f prev="" runc=""
  for f in ${global[@]+"${global[@]}"}; do
    if [[ $f == --runtime=*runc || ($prev == --runtime && $f == *runc) ]]; then runc=1; fi
    prev=$f
  done
  if [[ -n $runc ]]; then
    command -v runc >/dev/null || missing+=(runc)
  fi
  # Rootless podman maps ids with newuidmap; as root it is not needed.
  if [[ $(id -u) -ne 0 ]] && ! command -v newuidmap >/dev/null; then missing+=(uidmap); fi
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "container: ${missing[*]} missing; install them (on Debian, as root: apt-get install ${missing[*]}), or use CONTAINER_ENGINE=docker" >&2
    exit 1
  fi
  echo "[container] installing ${missing[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [[ ${1:-} == install ]]; then
  install
  exit 0
fi
(($#)) || { echo "usage: hack/container.sh install | ARGS..." >&2; exit 2; }

if [[ $engine != podman ]]; then
  exec "$engine" "$@"
fi
command -v podman >/dev/null || { echo "container: podman is missing: hack/container.sh install" >&2; exit 1; }
sub=$1
shift
case $sub in
  run | create | build)
    exec podman ${global[@]+"${global[@]}"} "$sub" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@" ;;
  *)
    exec podman ${global[@]+"${global[@]}"} "$sub" "$@" ;;
esac
