#!/usr/bin/env bash
# The README's first command. Starts a local control plane, a fake Vast server playing a
# workergroup that scales up (creating -> loading -> model_loading -> idle, one worker
# failing and being replaced), applies the CRD, a Secret and a WorkerGroup, runs the
# operator, and shows the resource and its events changing; then a second WorkerGroup
# mirroring the whole endpoint (two workergroups), the settings read from the fake's
# console, and a change of them told as an event. Tears everything down at the end or
# on Ctrl-C. Unattended; DEMO_STEP (default 8s) sets the pace of the story.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work="$root/.demo"
step=${DEMO_STEP:-8s}
export VAST_CLUSTER_DIR="$work/cluster"
pids=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Back to the terminal: the tee of the output may be gone (Ctrl-C).
  exec >&3 2>&4
  say "cleaning up"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  hack/cluster.sh down || true
  echo "logs: $work/*.log, $work/cluster/logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work"
# Everything the demo prints also goes to a file, searched for its API key at the end.
# The tee ignores Ctrl-C, so that the clean-up can still print; it writes to the
# terminal again (fds 3 and 4).
exec 3>&1 4>&2
exec > >(exec tee -i "$work/demo.out") 2>&1
say "building the operator and the control plane (first run: a few minutes)"
cargo build --quiet --workspace
# Never touch the user's own cluster: the demo's kubeconfig is set explicitly, and a
# failed start stops here (an `eval "$(...)"` would hide the failure).
hack/cluster.sh up >/dev/null
export KUBECONFIG="$VAST_CLUSTER_DIR/kubeconfig"
[[ -s "$KUBECONFIG" ]] || { echo "the local control plane did not start"; exit 1; }
kubectl="$root/hack/bin/kubectl"
op="$root/target/debug/vast-operator"
fake="$root/target/debug/fake-vast"

say "starting the fake Vast server"
"$fake" --port 0 --demo-workergroup 4242 --demo-api-key vk1-demo-key-4242 --demo-step "$step" \
  >"$work/fake-vast.out" 2>"$work/fake-vast.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/fake-vast.out" 2>/dev/null && break; sleep 0.1; done
vast_url=$(sed -n 's/^fake Vast listening on //p' "$work/fake-vast.out")
[[ -n "$vast_url" ]] || { echo "fake Vast did not start"; cat "$work/fake-vast.log"; exit 1; }
echo "fake Vast at $vast_url"
# The console side of the story: workergroup 4242 belongs to endpoint 4240 ("llama-70b",
# at most 20 workers), which has a second workergroup, 4243, with two workers of its own.
fake_ctl() { curl -fsS -X "$1" -H 'content-type: application/json' -d "$3" "$vast_url/_fake/$2"; }
fake_ctl PUT endpoints/4240 '{"api_key": "vk1-demo-key-4242", "fields": {"endpoint_name": "llama-70b", "endpoint_state": "active", "max_workers": 20, "cold_workers": 1, "min_load": 10.0, "target_util": 0.9, "cold_mult": 2.5}}'
fake_ctl PATCH workergroups/4242/settings '{"endpoint_id": 4240, "min_load": 10.0, "target_util": 0.9, "cold_mult": 2.5, "test_workers": 3, "gpu_ram": 24.0, "template_hash": "3f5c9e0a", "template_id": 77}'
fake_ctl PUT workergroups/4243 '{"api_key": "vk1-demo-key-4242", "workers": [{"id": 2001, "status": "idle", "url": "http://192.0.2.201:40201"}, {"id": 2002, "status": "loading", "url": "http://192.0.2.202:40202"}]}'
fake_ctl PATCH workergroups/4243/settings '{"endpoint_id": 4240, "test_workers": 3, "gpu_ram": 24.0, "template_hash": "3f5c9e0a", "template_id": 77}'

say "kubectl apply -f crds/ && kubectl apply -f docs/examples/workergroup.yaml"
"$kubectl" apply -f crds/
"$kubectl" wait --for=condition=Established crd/workergroups.vast.ai --timeout=30s
"$kubectl" apply -f docs/examples/workergroup.yaml

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
metrics_port=$(free_port); health_port=$(free_port)
say "vast-operator run --vast-url $vast_url --vast-console-url $vast_url --settings-interval 10s --metrics-addr 127.0.0.1:$metrics_port --health-addr 127.0.0.1:$health_port"
"$op" run --vast-url "$vast_url" --vast-console-url "$vast_url" --settings-interval 10s \
  --metrics-addr "127.0.0.1:$metrics_port" \
  --health-addr "127.0.0.1:$health_port" >"$work/operator.log" 2>&1 &
pids+=($!)

say "watching the workergroup scale up (kubectl get workergroup llama, on every change)"
deadline=$((SECONDS + 180))
last=""
while ((SECONDS < deadline)); do
  summary=$("$kubectl" get workergroup llama -o jsonpath='{.status.readySummary}' 2>/dev/null || true)
  states=$("$kubectl" get workergroup llama -o jsonpath='{range .status.workers[*]}{.id}:{.status} {end}' 2>/dev/null || true)
  if [[ "$summary $states" != "$last" ]]; then
    printf '%s  ready %-5s workers: %s\n' "$(date +%T)" "${summary:--}" "${states:-(none yet)}"
    last="$summary $states"
  fi
  [[ "$summary" == "3/3" && "$states" == "1001:idle 1003:idle 1004:idle " ]] && break
  sleep 1
done
[[ "$summary" == "3/3" ]] || { echo "the workergroup did not reach 3/3 ready (got ${summary:-nothing})"; tail -n 30 "$work/operator.log"; exit 1; }

say "kubectl get workergroups -o wide"
"$kubectl" get workergroups -o wide
say "kubectl get workergroup llama -o jsonpath='{.status.workers}'"
"$kubectl" get workergroup llama -o jsonpath='{range .status.workers[*]}{.id}{"\t"}{.status}{"\t"}{.url}{"\n"}{end}'
say "events"
"$kubectl" get events.events.k8s.io --sort-by=.eventTime \
  -o custom-columns='TIME:.eventTime,TYPE:.type,REASON:.reason,OBJECT:.regarding.name,NOTE:.note'
say "curl /readyz and /metrics (the workergroup's series)"
curl -s "http://127.0.0.1:$health_port/readyz"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^vast_operator_(leader|workergroup_(workers|ready_workers|max_workers|load))'
dns=$(cat "$VAST_CLUSTER_DIR/dns-addr")
q() { python3 "$root/hack/dnsq.py" "$dns" "$1" "$2" | paste -sd' ' -; }
svc=llama.default.svc.cluster.local
say "DNS: what a client in the cluster resolves (the local CoreDNS at $dns)"
printf '%-48s %s\n' "$svc A" "$(q "$svc" A)  (the Service's ClusterIP)"
printf '%-48s %s\n' "_http._tcp.$svc SRV" "$(q "_http._tcp.$svc" SRV)"
say "kubectl patch workergroup llama: spec.discovery.headless=true (DNS names the workers)"
"$kubectl" patch workergroup llama --type merge -p '{"spec":{"discovery":{"headless":true}}}' >/dev/null
deadline=$((SECONDS + 60))
until [[ $(q "$svc" A) == *192.0.2.* ]] || ((SECONDS > deadline)); do sleep 1; done
if [[ $(q "$svc" A) != *192.0.2.* ]]; then
  echo "the workers did not appear in DNS within 60s"
  tail -n 20 "$VAST_CLUSTER_DIR/logs/coredns.log" "$work/operator.log"
  exit 1
fi
printf '%-48s %s\n' "$svc A" "$(q "$svc" A)"
printf '%-48s %s\n' "_http._tcp.$svc SRV" "$(q "_http._tcp.$svc" SRV)"
for name in $(python3 "$root/hack/dnsq.py" "$dns" "_http._tcp.$svc" SRV | awk '{print $4}'); do
  printf '%-48s %s\n' "$name A" "$(q "$name" A)"
done
printf '%-48s %s\n' "status.readyUrls" "$("$kubectl" get workergroup llama -o jsonpath='{.status.readyUrls}')"
say "kubectl apply -f docs/examples/endpoint-workergroup.yaml (spec.endpointId: every workergroup of endpoint 4240)"
"$kubectl" apply -f docs/examples/endpoint-workergroup.yaml
deadline=$((SECONDS + 60))
until [[ $("$kubectl" get workergroup llama-all -o jsonpath='{.status.workerCount}/{.status.settings.endpointName}' 2>/dev/null) == 5/llama-70b ]] || ((SECONDS > deadline)); do sleep 1; done
"$kubectl" get workergroups -o wide
say "kubectl get workergroup llama-all -o jsonpath='{.status.settings}' (from the console; its api_key never copied)"
"$kubectl" get workergroup llama-all -o jsonpath='{.status.settings}'; echo
[[ $("$kubectl" get workergroup llama-all -o jsonpath='{.status.settings.workergroupIds}') == '[4242,4243]' ]] \
  || { echo "the endpoint's settings did not arrive"; tail -n 30 "$work/operator.log"; exit 1; }
all=llama-all.default.svc.cluster.local
deadline=$((SECONDS + 60))
until [[ $(q "$all" A) == *192.0.2.201* ]] || ((SECONDS > deadline)); do sleep 1; done
printf '%-48s %s
' "$all A" "$(q "$all" A)  (the ready workers of both workergroups)"
say "at Vast: endpoint llama-70b raised to 40 workers, then suspended"
fake_ctl PATCH endpoints/4240 '{"max_workers": 40, "endpoint_state": "suspended"}'
deadline=$((SECONDS + 60))
until [[ $("$kubectl" get workergroup llama-all -o jsonpath='{.status.readySummary}') == *suspended* ]] || ((SECONDS > deadline)); do sleep 1; done
"$kubectl" get workergroups -o wide
"$kubectl" get events.events.k8s.io --sort-by=.eventTime \
  -o custom-columns='TIME:.eventTime,TYPE:.type,REASON:.reason,OBJECT:.regarding.name,NOTE:.note' \
  | grep -E '^TIME|Settings|EndpointNotActive' || true
[[ $("$kubectl" get workergroup llama-all -o jsonpath='{.status.settings.maxWorkers}') == 40 ]] \
  || { echo "the change of settings was not seen"; tail -n 30 "$work/operator.log"; exit 1; }
say "the demo's output, logs and objects searched for its API key (hack/leak-search.sh)"
rm -rf "$work/leak" && mkdir -p "$work/leak"
"$kubectl" get workergroups,services,endpointslices.discovery.k8s.io,events.events.k8s.io -A -o json \
  >"$work/leak/cluster-objects.json"
cp "$work/operator.log" "$work/fake-vast.log" "$work/fake-vast.out" "$work/demo.out" "$work/leak/"
hack/leak-search.sh "$work/leak" --min-lines 200 --min-files 6 --min-dumps 1
say "demo finished"
