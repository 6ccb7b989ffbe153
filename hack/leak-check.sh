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

# Besides hack/leak-search.sh's own planted file, the planted key must be found in the
# suite's output (tests/smoke.rs logs it through the in-process operators' log) and in a
# child operator's log (tests/smoke.rs has one log what Vast answered, which quotes it).
search() {
  "$root/hack/leak-search.sh" "$1" \
    --min-lines "${LEAK_MIN_LINES:-100000}" --min-files "${LEAK_MIN_FILES:-60}" \
    --min-dumps "${LEAK_MIN_DUMPS:-50}" \
    --require 'tests\.log' --require 'planted-child-[0-9]+-canary(-[0-9]+)?\.log'
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
