#!/usr/bin/env bash
# The script a user would write instead of the operator, as make bench's baseline: for
# every WorkerGroup ask Vast with curl, summarise with jq and write the status with
# `kubectl patch --subresource=status`; once per INTERVAL seconds, ROUNDS times. Ends
# by writing the shell's and its children's CPU times (bash `times`) to TIMES_FILE.
#
# Environment: KUBECONFIG, KUBECTL, VAST_URL, VAST_API_KEY, NAMESPACE, GROUPS_FILE
# (lines "name workergroup-id"), INTERVAL, ROUNDS, TIMES_FILE.
set -uo pipefail
for ((round = 0; round < ROUNDS; round++)); do
  start=$SECONDS
  while read -r name id; do
    body=$(curl -s -X POST -H "Authorization: Bearer $VAST_API_KEY" \
      -H 'Content-Type: application/json' -d "{\"id\": $id}" "$VAST_URL/get_workergroup_workers/")
    patch=$(jq -c '{status: {workerCount: length,
      readyWorkers: (map(select(.status == "idle" or .status == "running")) | length)}}' <<<"$body")
    "$KUBECTL" -n "$NAMESPACE" patch workergroup "$name" --subresource=status \
      --type=merge -p "$patch" >/dev/null
  done <"$GROUPS_FILE"
  left=$((INTERVAL - (SECONDS - start)))
  if ((round + 1 < ROUNDS && left > 0)); then sleep "$left"; fi
done
times >"$TIMES_FILE"
