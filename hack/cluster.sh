#!/usr/bin/env bash
# A local Kubernetes control plane for tests and the demo: etcd, kube-apiserver,
# kube-controller-manager and CoreDNS as plain processes on free 127.0.0.1 ports. The
# controller manager runs what a real cluster does for objects like ours: the garbage
# collector (ownerReferences), the namespace controller (namespace deletion completes),
# the ServiceAccount and token controllers and the kube-root-ca.crt publisher. CoreDNS
# serves cluster.local from Services and EndpointSlices. There is no scheduler, kubelet
# or kube-proxy.
#
#   hack/cluster.sh up      start (idempotent); prints `export KUBECONFIG=...`,
#                           `export VAST_CLUSTER_DNS=127.0.0.1:<port>` and a PATH export
#                           for the matching kubectl: `eval "$(hack/cluster.sh up)"`
#   hack/cluster.sh down    stop everything and delete its data (logs are kept)
#   hack/cluster.sh status  exit 0 when running and ready
#   hack/cluster.sh apiserver-stop | apiserver-start | etcd-restart
#                           faults for tests: the same ports, certificates and data
#
# VAST_APISERVER_FLAGS adds kube-apiserver flags, one per line, each passed whole (so a
# path may hold spaces): `--name=value` (a test's own cluster: request limits; the chaos
# run's audit log and tokens), kept for apiserver-start.
# VAST_CLUSTER_NO_DNS=1 leaves CoreDNS out (the benchmark: its watches would count).
# VAST_CLUSTER_NO_GC=1 leaves the garbage collector out (a test of what the operator does
# while the collector is behind).
#
# State lives in $VAST_CLUSTER_DIR (default: .cluster/ in the repository): kubeconfig,
# pki/, etcd-data/, dns-addr, Corefile,
# logs/{etcd,kube-apiserver,kube-controller-manager,coredns}.log, *.pid.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${VAST_CLUSTER_DIR:-$root/.cluster}
pki="$dir/pki"
logs="$dir/logs"
kubeconfig="$dir/kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }

alive() { [[ -f "$dir/$1.pid" ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

ready() {
  [[ -f "$dir/apiserver-url" ]] || return 1
  curl -sf --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "$(cat "$dir/apiserver-url")/readyz" >/dev/null 2>&1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop_one() {
  local name=$1
  if [[ -f "$dir/$name.pid" ]]; then
    local pid
    pid=$(cat "$dir/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$name.pid"
  fi
}

down() {
  stop_one coredns
  stop_one kube-controller-manager
  stop_one kube-apiserver
  stop_one etcd
  rm -rf "$dir/etcd-data" "$pki" "$kubeconfig" "$dir/apiserver-url" "$dir/etcd-url" \
    "$dir/etcd-peer-port" "$dir/apiserver-flags" "$dir/dns-addr" "$dir/Corefile" "$dir"/*.pid
  log "stopped; logs kept in $logs"
}

make_pki() {
  mkdir -p "$pki"
  local o="openssl"
  $o req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vast-operator-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  # Serving certificate for 127.0.0.1 and localhost.
  $o req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > "$pki/apiserver.ext"
  $o x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # Admin client certificate in system:masters.
  $o req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" \
    -keyout "$pki/admin.key" -out "$pki/admin.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > "$pki/admin.ext"
  $o x509 -req -in "$pki/admin.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/admin.ext" -out "$pki/admin.crt" 2>/dev/null
  # Service-account token signing key pair.
  $o genrsa -out "$pki/sa.key" 2048 2>/dev/null
  $o rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local url=$1 b64="base64 -w0"
  cat > "$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vast-test
  cluster:
    server: $url
    certificate-authority-data: $($b64 < "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $($b64 < "$pki/admin.crt")
    client-key-data: $($b64 < "$pki/admin.key")
contexts:
- name: vast-test
  context:
    cluster: vast-test
    user: admin
    namespace: default
current-context: vast-test
EOF
  mv "$kubeconfig.tmp" "$kubeconfig"
}

print_env() {
  echo "export KUBECONFIG=$kubeconfig"
  if [[ -f "$dir/dns-addr" ]]; then echo "export VAST_CLUSTER_DNS=$(cat "$dir/dns-addr")"; fi
  echo "export PATH=\"$root/hack/bin:\$PATH\"  # kubectl $("$root/hack/bin/kubectl" version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || echo '(matching the apiserver)')"
}

# etcd on the client URL and peer port recorded by `up`, with its data kept.
start_etcd() {
  local bin="$root/hack/bin" etcd_url etcd_peer
  etcd_url=$(cat "$dir/etcd-url"); etcd_peer=$(cat "$dir/etcd-peer-port")
  log "starting etcd on $etcd_url"
  "$bin/etcd" --name default --data-dir "$dir/etcd-data" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync --log-level warn >>"$logs/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  local deadline=$((SECONDS + 60))
  until curl -sf --max-time 2 "$etcd_url/health" >/dev/null 2>&1; do
    if ! alive etcd || ((SECONDS > deadline)); then
      log "etcd did not become healthy; last log lines:"; tail -n 20 "$logs/etcd.log" >&2; down; exit 1
    fi
    sleep 0.2
  done
}

# kube-apiserver on the URL recorded by `up`, against the recorded etcd.
start_apiserver() {
  local bin="$root/hack/bin" url etcd_url port extra=()
  url=$(cat "$dir/apiserver-url"); etcd_url=$(cat "$dir/etcd-url"); port=${url##*:}
  # One flag per line (trimmed), blank lines left out.
  if [[ -f "$dir/apiserver-flags" ]]; then
    local line
    while read -r line; do [[ -n "$line" ]] && extra+=("$line"); done < "$dir/apiserver-flags"
  fi
  log "starting kube-apiserver on $url"
  "$bin/kube-apiserver" \
    --etcd-servers "$etcd_url" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --authorization-mode RBAC \
    --service-cluster-ip-range 10.96.0.0/12 \
    --endpoint-reconciler-type none \
    --disable-admission-plugins ServiceAccount \
    --allow-privileged=true \
    "${extra[@]}" \
    >>"$logs/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"
  local deadline=$((SECONDS + 120))
  until ready; do
    if ! alive kube-apiserver || ((SECONDS > deadline)); then
      log "kube-apiserver did not become ready; last log lines:"; tail -n 30 "$logs/kube-apiserver.log" >&2; down; exit 1
    fi
    sleep 0.3
  done
}

# CoreDNS with the kubernetes plugin (zone cluster.local) on a free loopback port, as a
# cluster's DNS would serve our Services and EndpointSlices. Ready once it answers for
# the apiserver's own `kubernetes.default` Service.
start_coredns() {
  local bin="$root/hack/bin" port
  port=$(free_port)
  cat > "$dir/Corefile" <<EOF
cluster.local:$port {
    bind 127.0.0.1
    kubernetes cluster.local {
        kubeconfig $kubeconfig
        ttl 5
    }
}
EOF
  log "starting coredns on 127.0.0.1:$port"
  "$bin/coredns" -conf "$dir/Corefile" >"$logs/coredns.log" 2>&1 &
  echo $! > "$dir/coredns.pid"
  echo "127.0.0.1:$port" > "$dir/dns-addr"
  local deadline=$((SECONDS + 60))
  until python3 "$root/hack/dnsq.py" "127.0.0.1:$port" kubernetes.default.svc.cluster.local A >/dev/null 2>&1; do
    if ! alive coredns || ((SECONDS > deadline)); then
      stop_one coredns
      return 1
    fi
    sleep 0.3
  done
}

up() {
  if alive kube-apiserver && alive etcd && alive kube-controller-manager && ready &&
    { [[ -n ${VAST_CLUSTER_NO_DNS:-} ]] || alive coredns; }; then
    log "already running"
    print_env
    return 0
  fi
  down >/dev/null 2>&1 || true
  "$root/hack/tools.sh" kube-apiserver kube-controller-manager kubectl etcd coredns
  local bin="$root/hack/bin"
  mkdir -p "$dir" "$logs"
  make_pki

  local etcd_client etcd_peer api_port
  etcd_client=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  echo "http://127.0.0.1:$etcd_client" > "$dir/etcd-url"
  echo "$etcd_peer" > "$dir/etcd-peer-port"
  echo "https://127.0.0.1:$api_port" > "$dir/apiserver-url"
  # Kept for the apiserver-start fault: the apiserver comes back as it was.
  printf '%s\n' "${VAST_APISERVER_FLAGS:-}" > "$dir/apiserver-flags"
  : > "$logs/etcd.log"; : > "$logs/kube-apiserver.log"
  start_etcd
  start_apiserver
  local url
  url=$(cat "$dir/apiserver-url")
  write_kubeconfig "$url"

  # The project's CRDs go in before the controller manager starts: its garbage collector
  # learns new kinds only every 30 s, and until then cannot collect what they own (a
  # real cluster has had the CRD for long). Tests and the demo apply them again.
  if compgen -G "$root/crds/*.yaml" >/dev/null; then
    if ! { "$bin/kubectl" --kubeconfig "$kubeconfig" apply -f "$root/crds/" >/dev/null &&
      "$bin/kubectl" --kubeconfig "$kubeconfig" wait --for condition=Established \
        --timeout 60s -f "$root/crds/" >/dev/null; }; then
      log "could not install crds/"; down; exit 1
    fi
  fi

  log "starting kube-controller-manager"
  local controllers=namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller
  [[ "${VAST_CLUSTER_NO_GC:-}" == 1 ]] || controllers="garbage-collector-controller,$controllers"
  "$bin/kube-controller-manager" \
    --kubeconfig "$kubeconfig" \
    --controllers "$controllers" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --leader-elect=false --secure-port 0 \
    >"$logs/kube-controller-manager.log" 2>&1 &
  echo $! > "$dir/kube-controller-manager.pid"
  # Ready when it has made the default ServiceAccount of the default namespace.
  deadline=$((SECONDS + 60))
  until "$bin/kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1; do
    if ! alive kube-controller-manager || ((SECONDS > deadline)); then
      log "kube-controller-manager did not start; last log lines:"; tail -n 30 "$logs/kube-controller-manager.log" >&2; down; exit 1
    fi
    sleep 0.3
  done
  if [[ -z ${VAST_CLUSTER_NO_DNS:-} ]]; then
    # The port is free when chosen; if something takes it first, try another.
    local try
    for try in 1 2 3; do
      start_coredns && break
      ((try < 3)) || { log "coredns did not start; last log lines:"; tail -n 20 "$logs/coredns.log" >&2; down; exit 1; }
    done
  fi
  log "ready in ${SECONDS}s; logs in $logs"
  print_env
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  status) alive kube-apiserver && alive etcd && alive kube-controller-manager && alive coredns && ready ;;
  # Faults for tests: the same ports, certificates and data come back.
  apiserver-stop) stop_one kube-apiserver ;;
  apiserver-start) start_apiserver ;;
  etcd-restart) stop_one etcd; start_etcd ;;
  *) echo "usage: $0 up|down|status|apiserver-stop|apiserver-start|etcd-restart" >&2; exit 2 ;;
esac
