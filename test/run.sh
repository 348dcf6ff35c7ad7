#!/usr/bin/env bash
# Run test programs (built in $O/test/) and test scripts (test/*.sh), each
# under a timeout, and end with "N passed, N failed, N skipped".  A name
# with a slash is a path from the top: DIR/NAME.sh a script, DIR/NAME a
# program built in $O/DIR/NAME (an application's tests, next to it).
# Exit status of a test: 0 pass, 77 skip (reason on its output), else fail.
set -u
O=${O:-build}
TIMEOUT=${PT_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0 failed=()
logdir=$O/test-logs
mkdir -p "$logdir"
# Names are padded to the longest one given, so that the timings line up.
width=0
for name in "$@"; do
	name=${name%.sh}
	[ ${#name} -gt "$width" ] && width=${#name}
done
for name in "$@"; do
	case $name in
	*/*.sh) cmd=(bash "$name"); name=${name%.sh} ;;
	*.sh) cmd=(bash "test/$name"); name=${name%.sh} ;;
	*/*) cmd=("$O/$name") ;;
	*) cmd=("$O/test/$name") ;;
	esac
	log=$logdir/${name##*/}.log
	start=$(date +%s.%N)
	O=$O timeout -k 10 "$TIMEOUT" "${cmd[@]}" >"$log" 2>&1
	rc=$?
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS  %-*s %6ss\n' "$width" "$name" "$secs" ;;
	77) skip=$((skip + 1)); printf 'SKIP  %-*s %6ss  %s\n' "$width" "$name" "$secs" \
		"$(grep -i 'skip' "$log" | tail -n 1)" ;;
	124|137) fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-*s timed out after %ss\n' "$width" "$name" "$TIMEOUT" ;;
	*) fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-*s %6ss  (exit %d)\n' "$width" "$name" "$secs" "$rc" ;;
	esac
	if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
		sed 's/^/      | /' "$log" | tail -n 30
	fi
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
