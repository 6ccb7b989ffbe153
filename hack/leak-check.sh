#!/usr/bin/env bash
# The whole test suite with every log at trace level: the in-process operators'
# (VAST_TEST_LOG), the child operators' (VAST_OPERATOR_LOG), the test output, and each
# test namespace's events, WorkerGroups (status included), Services and EndpointSlices
# (VAST_LEAK_DUMP). Fails if any API key the tests use occurs anywhere in them (every
# test key starts with "vk1-" for that reason), also in base64 or by its tail, and if
# the search cannot be shown to work. LEAK_SEARCH_ONLY=1 searches the last run's output
# again without running the suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/leak"
if [[ -z ${LEAK_SEARCH_ONLY:-} ]]; then rm -rf "$out" "$root/target/test-logs"; fi
mkdir -p "$out"
cd "$root"

# The keys the tests use, their base64 forms (a Secret's data) and their tails (an echo
# cut at the front), searched in every file under $1. A planted key, written to a file
# of its own beside the others, must be found: a search that finds nothing because it
# read nothing fails. So do fewer files, lines or namespace dumps than a full run makes.
search() {
  local dir=$1
  local keys="$dir/../leak-keys.txt" patterns="$dir/../leak-patterns.txt"
  local planted="vk1-leak-canary-5a4b3c2d1e"
  printf 'a log line holding the planted key %s\n' "$planted" >"$dir/planted.log"
  grep -rhoE 'vk1-[A-Za-z0-9_-]+' "$root/tests" "$root/src" "$root/crates" | grep -vE -- '-$' | sort -u >"$keys"
  echo "$planted" >>"$keys"
  : >"$patterns"
  while read -r key; do
    echo "$key" >>"$patterns"
    # base64 of the key alone, without the padding and the last, partial character.
    local b64
    b64=$(printf %s "$key" | base64 -w0 | tr -d =)
    echo "${b64:0:$(( ${#b64} - 1 ))}" >>"$patterns"
    # The tail, for keys long enough that it is not a common word: 12 characters of a
    # key of 20 or more, 10 of one of 14 or more.
    if (( ${#key} >= 20 )); then
      echo "${key: -12}" >>"$patterns"
    elif (( ${#key} >= 14 )); then
      echo "${key: -10}" >>"$patterns"
    fi
  done <"$keys"
  local lines files dumps
  lines=$(cat "$dir"/* | wc -l)
  files=$(find "$dir" -type f | wc -l)
  dumps=$(find "$dir" -name '*-objects.json' | wc -l)
  echo "leak-check: searched $lines lines in $files files ($dumps namespace dumps) for $(wc -l <"$keys") keys as they are, in base64 and by their tails ($(wc -l <"$patterns") patterns)"
  if (( lines < ${LEAK_MIN_LINES:-100000} || files < ${LEAK_MIN_FILES:-60} || dumps < ${LEAK_MIN_DUMPS:-50} )); then
    echo "leak-check: too little was searched (at least ${LEAK_MIN_LINES:-100000} lines, ${LEAK_MIN_FILES:-60} files, ${LEAK_MIN_DUMPS:-50} dumps expected): the logs did not reach $dir" >&2
    exit 1
  fi
  local rc=0
  # The fixed patterns, and any vk1- key at all (also those the tests make at run time).
  { grep -rnoF -f "$patterns" "$dir" || rc=$?; } >"$dir/../leak-hits.txt"
  if ((rc > 1)); then
    echo "leak-check: the search failed (grep exit $rc)" >&2
    exit 1
  fi
  rc=0
  { grep -rnoE 'vk1-[a-z0-9-]+' "$dir" || rc=$?; } >>"$dir/../leak-hits.txt"
  if ((rc > 1)); then
    echo "leak-check: the search failed (grep exit $rc)" >&2
    exit 1
  fi
  if ! grep -q "^$dir/planted.log:1:$planted" "$dir/../leak-hits.txt"; then
    echo "leak-check: the planted key was not found in $dir/planted.log: the search does not work" >&2
    exit 1
  fi
  # tests/smoke.rs logs the planted key through the in-process operators' log: found in
  # the suite's output, it shows that the logs reach the search.
  if ! grep -q "^$dir/tests.log:[0-9]*:$planted" "$dir/../leak-hits.txt"; then
    echo "leak-check: the key planted in the tests' log was not found in $dir/tests.log: the logs did not reach the search (is VAST_TEST_LOG honoured?)" >&2
    exit 1
  fi
  rc=0
  grep -vF "$planted" "$dir/../leak-hits.txt" >"$dir/../leak-found.txt" || rc=$?
  if ((rc == 0)); then
    echo "leak-check: API keys found:" >&2
    head -20 "$dir/../leak-found.txt" >&2
    exit 1
  elif ((rc != 1)); then
    echo "leak-check: the search failed (grep exit $rc)" >&2
    exit 1
  fi
  echo "leak-check: no key found (the planted ones were)"
}

if [[ ${LEAK_SEARCH_ONLY:-} ]]; then
  search "$out"
  exit 0
fi
export VAST_TEST_LOG=trace VAST_OPERATOR_LOG=trace VAST_LEAK_DUMP="$out"
echo "leak-check: running the suite at trace level (output in $out)"
if ! cargo test --workspace --all-targets -- --nocapture >"$out/tests.log" 2>&1; then
  echo "leak-check: the suite failed; the whole output is in $out/tests.log" >&2
  # What failed, with each panic and the lines after it, and the compiler's errors.
  { grep -E -A12 "^error(\[|:)|panicked at" "$out/tests.log" | grep -vE "^\s+[0-9]+: |^\s+at " | head -150 >&2; } || true
  grep -E "^test .* FAILED|^test result: FAILED|^error: test failed" "$out/tests.log" >&2 || true
  exit 1
fi
grep -E "^test result:" "$out/tests.log" | awk '{p+=$4; f+=$6} END {print "leak-check: " p " tests passed, " f " failed"}'
cp target/test-logs/*.log "$out/" 2>/dev/null || true
search "$out"
