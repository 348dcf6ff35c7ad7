#!/usr/bin/env bash
# soak.sh - the exchange for minutes: one engine, two market-data servers and
# the load as demo.sh runs them, the engine sampled every minute, then the
# soak row.  Run by `make soak` (SOAK_MINUTES=N); not part of make check.
#
#   apps/exchange/soak.sh [--minutes N] [--rate R] [--dir DIR]
#
#   --minutes N  how long the load runs (default 10, at least 3)
#   --rate R     orders/s asked of the load (default 0: as the demo, as many
#                as its windows of orders in flight let through)
#   --dir DIR    work there (created if missing, left in place with the logs)
#                instead of a temporary directory removed at the end
#
# Each minute: the engine's orders/s (commands it applied), its resident
# memory (VmRSS from /proc), pages copied per command, writer stall p50 and
# p99 (SIGUSR1 makes the engine print its figures since the last minute),
# live orders, and its thread's involuntary context switches.  Then the soak
# row: orders/s in the last minute against the second (goal >= 95%) and the
# RSS from the second minute to the last (goal: flat once the books are full,
# within 5%).  The first minute fills the books and is left out of both.
#
# Exit status: 0 when the load's checks passed (the goals are reported, not
# enforced: the machine is shared), 1 when one failed, 2 on a usage error.
# Everything it started is stopped and its temporary directory removed, also
# when interrupted.
set -u
O=${O:-build}
B=$O/apps/exchange
minutes=10 rate=0 dir= keep=0

while [ $# -gt 0 ]; do
	case $1 in
	--minutes) minutes=${2:?--minutes needs a value}; shift ;;
	--rate) rate=${2:?--rate needs a value}; shift ;;
	--dir) dir=${2:?--dir needs a value}; keep=1; shift ;;
	-h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $minutes in ''|*[!0-9]*) echo "soak.sh: --minutes wants whole minutes" >&2; exit 2 ;; esac
[ "$minutes" -ge 3 ] || { echo "soak.sh: --minutes must be at least 3 (the first fills the books)" >&2; exit 2; }
[ "$minutes" -le 1440 ] || { echo "soak.sh: --minutes: at most a day" >&2; exit 2; }
case $rate in ''|*[!0-9]*) echo "soak.sh: --rate wants whole orders/s" >&2; exit 2 ;; esac

for b in exchange-engine exchange-md exchange-load; do
	[ -x "$B/$b" ] || { echo "soak.sh: $B/$b is missing: run make first" >&2; exit 1; }
done

if [ -n "$dir" ]; then
	mkdir -p "$dir" || exit 1
	[ -z "$(ls -A "$dir")" ] || { echo "soak.sh: $dir is not empty" >&2; exit 2; }
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/pagetrack-soak.XXXXXX") || exit 1
fi

# shellcheck source=procs.sh
. "$(dirname "$0")/procs.sh"
cleanup() {
	stop_pids
	[ "$keep" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# Milliseconds of the wall clock; sleep until it reaches $1, a second at most
# at a time so that a signal is acted on within a second.
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
sleep_until() {
	local left
	while left=$(($1 - $(now_ms))); [ "$left" -gt 0 ]; do
		[ "$left" -gt 1000 ] && left=1000
		sleep "$((left / 1000)).$(printf %03d $((left % 1000)))"
	done
}

field() { awk -v k="$2" '$1 == k":" { print $2 }' "$1" 2>/dev/null; }

"$B/exchange-engine" --dir "$dir/data" --port-file "$dir/engine.port" \
	--status "$dir/engine.status" >"$dir/engine.log" 2>&1 &
engine=$!
pids+=("$engine")
wait_port "$dir/engine.port" "$engine" || { echo "soak.sh: the engine did not start:"; cat "$dir/engine.log"; exit 1; }
mds=()
for m in 1 2; do
	"$B/exchange-md" --dir "$dir/data" --port-file "$dir/md$m.port" >"$dir/md$m.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_port "$dir/md$m.port" "$pid" || { echo "soak.sh: md server $m did not start:"; cat "$dir/md$m.log"; exit 1; }
	mds+=(--md "$(cat "$dir/md$m.port")")
done

asked="$rate orders/s"
[ "$rate" = 0 ] && asked="as the demo (as many as the windows let through)"
echo "pagetrack exchange soak: $minutes minutes, orders $asked; work dir $dir"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
sed 's/^/  /' "$dir/engine.log" "$dir/md1.log" "$dir/md2.log"
echo

start=$(now_ms)
"$B/exchange-load" --engine "$(cat "$dir/engine.port")" "${mds[@]}" --status "$dir/engine.status" \
	--seconds $((minutes * 60)) --rate "$rate" >"$dir/load.out" 2>"$dir/load.err" &
load=$!
pids+=("$load")
kill -USR1 "$engine"	# the first report starts from here

printf '%6s %10s %10s %10s %10s %10s %10s %12s\n' minute orders/s "RSS MiB" pages/cmd \
	"stall p50" "stall p99" live "invol. csw"
declare -a ops rss
csw0=$(field "/proc/$engine/task/$engine/status" nonvoluntary_ctxt_switches)
for m in $(seq "$minutes"); do
	# Half a second early: the last minute ends before the load does.
	sleep_until $((start + 60000 * m - 500))
	kill -0 "$engine" 2>/dev/null || { echo "soak.sh: the engine exited:"; tail "$dir/engine.log"; exit 1; }
	rss[m]=$(field "/proc/$engine/status" VmRSS)
	csw=$(field "/proc/$engine/task/$engine/status" nonvoluntary_ctxt_switches)
	n=$(grep -c 'report:' "$dir/engine.log")
	kill -USR1 "$engine"
	for i in $(seq 50); do
		[ "$(grep -c 'report:' "$dir/engine.log")" -gt "$n" ] && break
		sleep 0.1
	done
	line=$(grep 'report:' "$dir/engine.log" | tail -n 1)
	# "report: S s, C commands, Y syncs, P pages (X per command), stall p50 A ns p99 B ns max M ns (collect p50 K ns), L live orders"
	set -- $(echo "$line" | sed -E 's/.*report: ([0-9.]+) s, ([0-9]+) commands, [0-9]+ syncs, [0-9]+ pages \(([0-9.]+) per command\), stall p50 ([0-9]+) ns p99 ([0-9]+) ns max [0-9]+ ns \(collect p50 [0-9]+ ns\), ([0-9]+) live orders/\1 \2 \3 \4 \5 \6/')
	[ $# = 6 ] || { echo "soak.sh: no report from the engine: $line"; exit 1; }
	ops[m]=$(awk -v c="$2" -v s="$1" 'BEGIN { printf "%.0f", (s > 0 ? c / s : 0) }')
	printf '%6d %10d %10.1f %10.3f %7.0f us %7.0f us %10d %12d\n' "$m" "${ops[m]}" \
		"$(awk -v k="${rss[m]}" 'BEGIN { print k / 1024 }')" "$3" \
		"$(awk -v n="$4" 'BEGIN { print n / 1000 }')" "$(awk -v n="$5" 'BEGIN { print n / 1000 }')" \
		"$6" $((csw - csw0))
	csw0=$csw
done

# The load ends its run by itself; its closing checks take seconds, bounded here.
for i in $(seq 900); do
	kill -0 "$load" 2>/dev/null || break
	sleep 0.1
done
kill "$load" 2>/dev/null
wait "$load"
rc=$?
keep_pids=()
for p in "${pids[@]}"; do [ "$p" = "$load" ] || keep_pids+=("$p"); done
pids=("${keep_pids[@]}")

echo
sed -n '/^orders\|^RESULT/p' "$dir/load.out"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v first="${ops[2]}" -v last="${ops[$minutes]}" \
	-v n="$minutes" -v rmin="$(printf '%s\n' "${rss[@]:2}" | sort -n | head -n 1)" \
	-v rmax="$(printf '%s\n' "${rss[@]:2}" | sort -n | tail -n 1)" 'BEGIN {
	ratio = first > 0 ? 100 * last / first : 0
	spread = rmin > 0 ? 100 * (rmax - rmin) / rmin : 0
	printf "soak: orders/s minute %d vs 2: %.0f vs %.0f = %.1f%% (goal >= 95%%: %s); ", n, last, first, ratio,
	       (ratio >= 95 ? "met" : "MISSED")
	printf "RSS minute 2..%d: %.1f..%.1f MiB, %.1f%% apart (goal flat, <= 5%%: %s)\n", n,
	       rmin / 1024, rmax / 1024, spread, (spread <= 5 ? "met" : "MISSED")
}'

for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
for p in "${pids[@]}"; do
	wait "$p" 2>/dev/null
	s=$?
	if [ "$s" != 0 ]; then
		echo "FAIL: a server exited with status $s"
		rc=1
	fi
done
pids=()
exit "$rc"
