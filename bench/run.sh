#!/usr/bin/env bash
# Run benchmark programs (built in $O/bench/, named as arguments) one after
# the other.  Each prints its table as it measures; each writes one JSON
# object, and this script gathers them, in order, into one JSON array in
# $O/bench.json.
#
#   O=build bench/run.sh tracker [more...]       (what `make bench` does)
#   PT_BENCH_ARGS="--reps 3"                      passed to every program
#   PT_BENCH_TIMEOUT=900                          seconds per program
#
# Figures never fail a run: the exit status is 1 only when a program
# crashed, timed out, or reported a failure (a backend that probes usable
# did not work); the JSON then says so for that program.
set -u
O=${O:-build}
TIMEOUT=${PT_BENCH_TIMEOUT:-900}
read -r -a extra <<<"${PT_BENCH_ARGS:-}"
out=$O/bench.json
dir=$O/bench
failed=()
objects=()

if [ $# -eq 0 ]; then
	echo "usage: O=build bench/run.sh NAME..." >&2
	exit 64
fi
for name in "$@"; do
	prog=$dir/$name
	json=$dir/$name.json
	rm -f "$json"
	echo "### $name"
	if [ ! -x "$prog" ]; then
		echo "$prog: not built" >&2
		rc=127
	else
		timeout -k 10 "$TIMEOUT" "$prog" --json "$json" "${extra[@]}"
		rc=$?
	fi
	case $rc in
	0) ;;
	124|137) echo "$name: timed out after ${TIMEOUT}s" >&2 ;;
	*) if [ "$rc" -gt 128 ]; then
		echo "$name: killed by signal $((rc - 128))" >&2
	   else
		echo "$name: exit $rc" >&2
	   fi ;;
	esac
	[ "$rc" -ne 0 ] && failed+=("$name")
	# A program that died before writing its object still gets one.
	if [ -s "$json" ]; then
		objects+=("$(cat "$json")")
	else
		objects+=("{\"benchmark\": \"$name\", \"exit\": $rc, \"results\": []}")
	fi
	echo
done

{
	echo "["
	for i in "${!objects[@]}"; do
		printf '%s' "${objects[$i]}"
		[ "$i" -lt $((${#objects[@]} - 1)) ] && printf ','
		echo
	done
	echo "]"
} >"$out.tmp" && mv "$out.tmp" "$out"

echo "results: $out"
if [ ${#failed[@]} -gt 0 ]; then
	echo "benchmarks that failed: ${failed[*]}"
	exit 1
fi
echo "$# benchmarks ran"
