#!/usr/bin/env bash
# tracker-chunks: the tracker suites again with PT_TRACK_CHUNKS on every
# uffd-wp tracker (adaptive ones included), once with the guard's default
# cooling and once with every marked chunk re-armed at every collect (the
# most guard faults).
set -u
O=${O:-build}
rc=0
for mode in 1 cool; do
	for t in tracker-basic tracker-model tracker-converge tracker-threads tracker-adaptive; do
		out=$(PAGETRACK_TEST_CHUNKS=$mode PAGETRACK_TEST_SECONDS=${PAGETRACK_TEST_SECONDS:-0.5} \
			"$O/test/$t" 2>&1)
		r=$?
		echo "== $t, PAGETRACK_TEST_CHUNKS=$mode: exit $r"
		echo "$out" | grep -E 'uffd-wp|failed|done,' | sed 's/^/   /'
		[ "$r" = 0 ] || rc=1
	done
done
exit $rc
