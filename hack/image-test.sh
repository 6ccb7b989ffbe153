#!/usr/bin/env bash
# `make image-test`: tests/image.rs against IMAGE (built by `make image`), every log at
# trace level, then the test output, the containers' logs and the test namespaces'
# objects searched for API keys (hack/leak-search.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$root/target/image-leak"
rm -rf "$out" && mkdir -p "$out"
rm -f target/test-logs/image-*.log
export IMAGE=${IMAGE:-localhost/vast-operator:dev}
export VAST_TEST_LOG=trace VAST_OPERATOR_LOG=trace VAST_LEAK_DUMP="$out"
echo "image-test: $IMAGE (output in $out)"
if ! cargo test --locked --test image -- --ignored --nocapture >"$out/tests.log" 2>&1; then
  echo "image-test: failed; the whole output is in $out/tests.log" >&2
  { grep -E -A12 "^error(\[|:)|panicked at" "$out/tests.log" | grep -vE "^\s+[0-9]+: |^\s+at " | head -150 >&2; } || true
  grep -E "^test .* FAILED|^test result: FAILED" "$out/tests.log" >&2 || true
  exit 1
fi
grep -E "^test result:" "$out/tests.log" | awk '{p+=$4; f+=$6} END {print "image-test: " p " tests passed, " f " failed"}'
grep -E "^image .* bytes|^takeover after" "$out/tests.log" || true
cp target/test-logs/image-*.log "$out/"
"$root/hack/leak-search.sh" "$out" --min-files 5 --min-lines 1000 --min-dumps 3 --require 'image-vo-[0-9]+-a\.log'
