#!/usr/bin/env bash
# Searches every file under DIR for the API keys this repository uses (every one starts
# with "vk1-"), as they are, in base64 (a Secret's data) and by their tails (an echo cut
# at the front), and for any "vk1-" key at all (those made at run time). Fails on a hit.
#
# It also proves that it searched: a planted key, written to DIR/planted.log, must be
# found, and so must the same key in every file matched by a --require pattern (a place
# the caller logged it on purpose); fewer lines, files or namespace dumps
# (*-objects.json) than the minimums given fail too.
#
#   hack/leak-search.sh DIR [--min-lines N] [--min-files N] [--min-dumps N] [--require ERE]...
#
# Used by hack/leak-check.sh (the test suite), hack/demo.sh and `make bench-smoke`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: hack/leak-search.sh DIR [--min-lines N] [--min-files N] [--min-dumps N] [--require ERE]...}
shift
min_lines=1 min_files=1 min_dumps=0
required=()
while (($#)); do
  case $1 in
    --min-lines) min_lines=$2; shift 2 ;;
    --min-files) min_files=$2; shift 2 ;;
    --min-dumps) min_dumps=$2; shift 2 ;;
    --require) required+=("$2"); shift 2 ;;
    *) echo "leak-search: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -d $dir ]] || { echo "leak-search: $dir is not a directory" >&2; exit 1; }
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
keys="$work/keys.txt" patterns="$work/patterns.txt" hits="$dir.hits.txt" found="$dir.found.txt"
planted="vk1-leak-canary-5a4b3c2d1e"
printf 'a log line holding the planted key %s\n' "$planted" >"$dir/planted.log"
grep -rhoIE --exclude-dir=bin 'vk1-[A-Za-z0-9_-]+' "$root/tests" "$root/src" "$root/crates" "$root/hack" "$root/docs" \
  | grep -vE -- '-$' | sort -u >"$keys"
echo "$planted" >>"$keys"
: >"$patterns"
while read -r key; do
  echo "$key" >>"$patterns"
  # base64 of the key alone, without the padding and the last, partial character.
  b64=$(printf %s "$key" | base64 -w0 | tr -d =)
  echo "${b64:0:$((${#b64} - 1))}" >>"$patterns"
  # The tail, for keys long enough that it is not a common word: 12 characters of a key
  # of 20 or more, 10 of one of 14 or more.
  if ((${#key} >= 20)); then
    echo "${key: -12}" >>"$patterns"
  elif ((${#key} >= 14)); then
    echo "${key: -10}" >>"$patterns"
  fi
done <"$keys"
lines=$(find "$dir" -type f -exec cat {} + | wc -l)
files=$(find "$dir" -type f | wc -l)
dumps=$(find "$dir" -name '*-objects.json' | wc -l)
echo "leak-search: searched $lines lines in $files files ($dumps namespace dumps) of $dir for $(sort -u "$keys" | wc -l) keys as they are, in base64 and by their tails ($(wc -l <"$patterns") patterns)"
if ((lines < min_lines || files < min_files || dumps < min_dumps)); then
  echo "leak-search: too little was searched (at least $min_lines lines, $min_files files, $min_dumps dumps expected): the logs did not reach $dir" >&2
  exit 1
fi
search() {
  local rc=0
  { grep "$@" "$dir" || rc=$?; } >>"$hits"
  if ((rc > 1)); then
    echo "leak-search: the search failed (grep exit $rc)" >&2
    exit 1
  fi
}
: >"$hits"
# The fixed patterns, and any vk1- key at all (also those made at run time); -a: a
# file grep takes for binary (a NUL byte) is searched as text, not passed over.
search -arnoF -f "$patterns"
search -arnoE 'vk1-[A-Za-z0-9_-]+'
if ! grep -q "^$dir/planted.log:1:$planted" "$hits"; then
  echo "leak-search: the planted key was not found in $dir/planted.log: the search does not work" >&2
  exit 1
fi
for re in "${required[@]}"; do
  if ! grep -qE "^$dir/$re:[0-9]+:$planted" "$hits"; then
    echo "leak-search: the key planted on purpose in a file matching $re was not found there: those logs did not reach the search" >&2
    exit 1
  fi
done
rc=0
grep -vF "$planted" "$hits" >"$found" || rc=$?
if ((rc == 0)); then
  echo "leak-search: API keys found (all in $found):" >&2
  head -20 "$found" >&2
  exit 1
elif ((rc != 1)); then
  echo "leak-search: the search failed (grep exit $rc)" >&2
  exit 1
fi
echo "leak-search: no key found (the planted ones were)"
