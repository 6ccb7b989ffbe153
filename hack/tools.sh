#!/usr/bin/env bash
# Builds the control-plane tools (kube-apiserver, kube-controller-manager, kubectl, etcd,
# CoreDNS, helm, and the health checker) from the Go module proxy.
#
# Each tool comes from a small consumer module under hack/tools/ whose go.mod/go.sum pin
# every module by hash (GOSUMDB=off: the checksum database is not reachable here, the
# committed go.sum is the trust root). Binaries land in a cache keyed by the hash of the
# pins and the Go version, so a tool is rebuilt only when a pin changes, and are linked
# into hack/bin/.
#
# Usage: hack/tools.sh [kube-apiserver|kube-controller-manager|kubectl|etcd|coredns|helm|health-check ...]
#        (default: all)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VAST_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vast-operator/tools}
bindir="$root/hack/bin"
mkdir -p "$cache" "$bindir"

export GOSUMDB=off GOFLAGS=-mod=readonly GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off

log() { printf '[tools] %s\n' "$*" >&2; }

build() {
  local name=$1 module=$2 pkg=$3 ldflags=${4:-}
  local dir="$root/hack/tools/$module"
  local key
  # The pins, the Go version, the package and flags, and any Go source of our own.
  key=$(cat "$dir/go.mod" "$dir/go.sum" <(go version) <(printf '%s %s' "$pkg" "$ldflags") \
    <(cat "$dir"/*.go 2>/dev/null) | sha256sum | cut -c1-16)
  local out="$cache/$name-$key/$name"
  if [[ ! -x "$out" ]]; then
    log "building $name ($pkg); this takes a few minutes the first time"
    local start=$SECONDS tmp="$cache/$name-$key.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/$name" "$pkg")
    rm -rf "$cache/$name-$key" && mv "$tmp" "$cache/$name-$key"
    log "built $name in $((SECONDS - start))s: $(du -h "$out" | cut -f1)"
  fi
  ln -sfn "$out" "$bindir/$name"
}

k8s_ldflags() {
  local v major minor
  v=$(cd "$root/hack/tools/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  local f
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    f+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$f"
}

# What Helm's own Makefile sets: its version, and the Kubernetes version it assumes
# when not given --kube-version (that of its client-go: v0.36 is Kubernetes 1.36).
# Without these a `helm template` assumes Kubernetes 1.20 and refuses our kubeVersion.
helm_ldflags() {
  local helm client major minor p f
  helm=$(cd "$root/hack/tools/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
  client=$(cd "$root/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)
  client=${client#v}
  major=$((${client%%.*} + 1))
  minor=${client#*.}; minor=${minor%%.*}
  f="-X helm.sh/helm/v3/internal/version.version=$helm -X helm.sh/helm/v3/internal/version.metadata="
  f+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    f+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  printf '%s' "$f"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(kube-apiserver kube-controller-manager kubectl etcd coredns helm health-check)
for t in "${tools[@]}"; do
  case $t in
    kube-apiserver) build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$(k8s_ldflags)" ;;
    kubectl) build kubectl kubernetes k8s.io/kubernetes/cmd/kubectl "$(k8s_ldflags)" ;;
    kube-controller-manager) build kube-controller-manager kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$(k8s_ldflags)" ;;
    etcd) build etcd etcd go.etcd.io/etcd/server/v3 ;;
    helm) build helm helm helm.sh/helm/v3/cmd/helm "$(helm_ldflags)" ;;
    coredns) build coredns coredns github.com/coredns/coredns ;;
    # Argo CD's Lua interpreter and Flux's kstatus on WorkerGroups (tests/health.rs).
    health-check) build health-check health-check . ;;
    *) log "unknown tool: $t"; exit 2 ;;
  esac
done
