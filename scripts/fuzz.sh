#!/usr/bin/env bash
# Run every fuzz target in the repository for a given duration each, one
# after another, and print one line per target: executions, new corpus
# entries, and whether it found a failing input.
#
#   scripts/fuzz.sh 60s            # every target, 60 s each
#   scripts/fuzz.sh 5m FuzzVerify  # only targets whose name matches
#
# CI (.ci/run) runs each target for a fixed count instead; this is for
# longer campaigns. A failing input is written by go test under the
# package's testdata/fuzz/<Target>/ and kept: commit it as a seed once the
# bug is fixed. Exits 1 if any target found one.
set -uo pipefail
cd "$(dirname "$0")/.."

dur=${1:-60s}
only=${2:-}
case "$dur" in
*[0-9]s | *[0-9]m | *[0-9]h) ;;
*)
	echo "usage: scripts/fuzz.sh DURATION [TARGET-REGEXP]  (DURATION like 60s, 5m, 1h)" >&2
	exit 2
	;;
esac

files=$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v -e '^./gen/' -e '^./.bin/' | sort)
if [ -z "$files" ]; then
	echo "no fuzz targets found" >&2
	exit 2
fi

found=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for file in $files; do
	pkg=$(dirname "$file")
	for f in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
		if [ -n "$only" ] && ! [[ "$f" =~ $only ]]; then
			continue
		fi
		corpus="$pkg/testdata/fuzz/$f"
		before=$(ls "$corpus" 2>/dev/null | wc -l)
		go test "$pkg" -run '^$' -fuzz "^${f}\$" -fuzztime "$dur" >"$log" 2>&1
		rc=$?
		after=$(ls "$corpus" 2>/dev/null | wc -l)
		# The last progress line: "fuzz: elapsed: 1m0s, execs: 123456 (2057/sec), new interesting: 12 (total: 40)";
		# its rate is over the last interval only, so it is left out.
		progress=$(grep -o 'execs: [0-9]* ([0-9]*/sec), new interesting: [0-9]* (total: [0-9]*)' "$log" | tail -1 | sed 's/ ([0-9]*\/sec)//')
		if [ $rc -eq 0 ]; then
			result="no failure"
		elif [ "$after" -gt "$before" ] || grep -q -e '--- FAIL' -e 'Failing input written' "$log"; then
			result="FAILING INPUT (see $corpus and the log below)"
			found=1
		elif grep -q 'context deadline exceeded' "$log"; then
			# The coordinator can stop on its own deadline while a worker
			# is busy; no input failed (see .ci/run).
			result="no failure (stopped by the fuzz coordinator's deadline)"
		else
			result="go test failed (log below)"
			found=1
		fi
		printf '%-24s %-8s %s; %s\n' "$f" "$dur" "${progress:-execs: ?}" "$result"
		if [ "${result#no failure}" = "$result" ]; then
			sed 's/^/    /' "$log" | tail -40
		fi
	done
done
exit $found
