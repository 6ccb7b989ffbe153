#!/usr/bin/env bash
# The whole test suite with every log at trace level: the in-process operators'
# (VAST_TEST_LOG), the child operators' (VAST_OPERATOR_LOG), the test output, and each
# test namespace's events, WorkerGroups (status included), Services and EndpointSlices
# (VAST_LEAK_DUMP). Fails if any API key the tests use occurs anywhere in them: every
# test key starts with "vk1-" for that reason.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/leak"
rm -rf "$out" "$root/target/test-logs"
mkdir -p "$out"
cd "$root"
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
lines=$(cat "$out"/* | wc -l)
files=$(find "$out" -type f | wc -l)
dumps=$(find "$out" -name '*-objects.json' | wc -l)
echo "leak-check: searched $lines lines in $files files ($dumps namespace dumps)"
rc=0
grep -rnoE 'vk1-[a-z0-9-]+' "$out" >"$out/../leak-hits.txt" || rc=$?
if ((rc == 0)); then
  echo "leak-check: API keys found:" >&2
  head -20 "$out/../leak-hits.txt" >&2
  exit 1
elif ((rc != 1)); then
  echo "leak-check: the search failed (grep exit $rc)" >&2
  exit 1
fi
echo "leak-check: no key found"
