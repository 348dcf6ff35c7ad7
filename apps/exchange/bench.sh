#!/usr/bin/env bash
# bench.sh - make bench-exchange: the same order load against the engine with
# no replication, with pagetrack replication, and with replicas refreshed by
# copying the whole block at each sync (the naive way), side by side.
#
#   apps/exchange/bench.sh [--seconds N] [--size BYTES] [--sync-us N] [--rate R] [--runs N]
#
# Two runs per mode, each with a fresh engine:
#  - capacity: orders flat out, acked as soon as applied, so orders/s is what
#    the engine can process while it publishes an epoch every --sync-us;
#  - fixed rate: --rate orders/s (default 20,000) in every mode, the same
#    load, for latency, writer stall per sync, pages per sync, replica lag.
# Defaults follow the issue's targets: a 256 MiB block, an epoch every 10 ms
# (100 syncs/s).  Data directories live on tmpfs (/dev/shm) in every mode:
# the comparison is about replication, not about this machine's disk.  One
# md server per replicated mode answers 2,000 queries/s and checks its copy
# against the engine once a second (the demo: every 200 ms; the check walks
# every live order, verification the unreplicated run has no copy to pay
# for).  --runs N (default 3) repeats the whole set, modes interleaved run
# by run so that a machine shared with other work weighs on each mode alike;
# each cell is the median.  Figures only: the exit status says whether the
# runs worked and their checks passed, not whether the targets were met.
set -u
O=${O:-build}
B=$O/apps/exchange
seconds=6 size=256M sync_us=10000 runs=3 rate=20000

while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=${2:?}; shift ;;
	--size) size=${2:?}; shift ;;
	--sync-us) sync_us=${2:?}; shift ;;
	--runs) runs=${2:?}; shift ;;
	--rate) rate=${2:?}; shift ;;
	-h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done

modes=(none pagetrack fullcopy)

work=$(mktemp -d /dev/shm/pagetrack-exbench.XXXXXX) || exit 1
# shellcheck source=procs.sh
. "$(dirname "$0")/procs.sh"
cleanup() {
	stop_pids
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# run MODE N RATE: one run with a fresh engine; prints the load's kv line
run() {
	local mode=$1 n=$2 r=$3 d="$work/$1-$2-$3" data eng md= args=()
	mkdir -p "$d"
	data="$d/data"
	"$B/exchange-engine" --mode "$mode" --dir "$data" --size "$size" --sync-us "$sync_us" \
		--sync-orders 100000000 --ack applied --port-file "$d/eport" --status "$d/status" \
		--quiet >"$d/engine.log" 2>&1 &
	eng=$!
	pids+=("$eng")
	wait_port "$d/eport" "$eng" || { cat "$d/engine.log" >&2; return 1; }
	if [ "$mode" != none ]; then
		"$B/exchange-md" --mode "$mode" --dir "$data" --port-file "$d/mport" --quiet \
			>"$d/md.log" 2>&1 &
		md=$!
		pids+=("$md")
		wait_port "$d/mport" "$md" || { cat "$d/md.log" >&2; return 1; }
		args=(--md "$(cat "$d/mport")" --queries 2 --query-rate 2000 --check-ms 1000)
	fi
	"$B/exchange-load" --engine "$(cat "$d/eport")" "${args[@]}" --status "$d/status" \
		--orders 4 --window 256 --rate "$r" --seconds "$seconds" --kv >"$d/load.out" 2>"$d/load.err" &
	local lp=$! t0 cpu0 cpu1
	# Who had the CPU: ticks over the middle of the run, in % of one core.
	sleep 1
	t0=$(date +%s.%N) cpu0=$(cpu_ticks "$eng" "${md:-0}" "$lp")
	sleep "$(awk -v s="$seconds" 'BEGIN { print (s > 2.5 ? s - 2 : 0.5) }')"
	cpu1=$(cpu_ticks "$eng" "${md:-0}" "$lp")
	local cpu
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$(date +%s.%N)" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		split(a, x, " "); split(b, y, " "); n = split("cpu_engine cpu_library cpu_md cpu_load", k, " ")
		for (i = 1; i <= n; i++) printf " %s=%.0f", k[i], 100 * (y[i] - x[i]) / hz / (t1 - t0) }')
	wait "$lp"
	local rc=$?
	kill "$eng" ${md:+"$md"} 2>/dev/null
	wait "$eng" ${md:+"$md"} 2>/dev/null
	pids=()
	rm -rf "$data"
	grep -q '^kv:' "$d/load.out" || { cat "$d/load.out" "$d/load.err" >&2; return 1; }
	grep '^kv:' "$d/load.out" | sed "s/\$/$cpu/"
	[ "$rc" = 0 ] || { echo "bench.sh: the $mode run failed its checks:" >&2; cat "$d/load.out" >&2; return 1; }
}

# cpu_ticks ENGINE MD LOAD: utime+stime of the engine's main thread, of its
# other threads (the region's log and checkpoint threads), of the md server
# and of the load generator
cpu_ticks() {
	local t main=0 lib=0 md=0 load=0
	for t in /proc/"$1"/task/*/stat; do
		[ -r "$t" ] || continue
		if [ "$t" = "/proc/$1/task/$1/stat" ]; then
			main=$(awk '{ print $14 + $15 }' "$t" 2>/dev/null || echo 0)
		else
			lib=$((lib + $(awk '{ print $14 + $15 }' "$t" 2>/dev/null || echo 0)))
		fi
	done
	[ "$2" != 0 ] && md=$(awk '{ print $14 + $15 }' /proc/"$2"/stat 2>/dev/null || echo 0)
	load=$(awk '{ print $14 + $15 }' /proc/"$3"/stat 2>/dev/null || echo 0)
	echo "$main $lib $md $load"
}

kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ms() { awk -v n="$1" 'BEGIN { if (n < 1000000) printf "%.0f us", n/1000; else printf "%.2f ms", n/1e6 }'; }

echo "exchange benchmark: $size block, an epoch every $sync_us us, $seconds s per run, $runs run(s) per cell"
echo "(data directories on tmpfs; noisy shared machine: figures vary from run to run)"
echo
declare -A R L P
status=0
for n in $(seq "$runs"); do
	for r in 0 "$rate"; do
		for mode in "${modes[@]}"; do
			l=$(run "$mode" "$n" "$r") || { status=1; continue; }
			L[$mode,$r]+="$l"$'\n'
			P[$mode,$r,$n]=$(kv "$l" orders_per_s)
		done
	done
done
for mode in "${modes[@]}"; do
	for r in 0 "$rate"; do
		[ -n "${L[$mode,$r]:-}" ] || continue
		for k in orders_per_s ack_p50_ns ack_p99_ns ack_p999_ns stall_p50_ns stall_p99_ns \
			 lag_p50_ns lag_p99_ns syncs pages_p50 pages_p99 cpu_engine cpu_library cpu_md \
			 cpu_load; do
			R[$mode,$r,$k]=$(while read -r l; do [ -n "$l" ] && kv "$l" $k; done \
					 <<<"${L[$mode,$r]}" | median)
		done
	done
done
# Capacity with pagetrack against the baseline of the same round.
ratios=()
for n in $(seq "$runs"); do
	[ -n "${P[pagetrack,0,$n]:-}" ] && [ -n "${P[none,0,$n]:-}" ] && [ "${P[none,0,$n]}" -gt 0 ] &&
		ratios+=("$(awk -v p="${P[pagetrack,0,$n]}" -v b="${P[none,0,$n]}" 'BEGIN { printf "%.1f", 100 * p / b }')")
done

row() {	# row MODE RATE
	local mode=$1 r=$2 lag50=- lag99=- pages=-
	[ -n "${R[$mode,$r,orders_per_s]:-}" ] || { printf '%-10s (failed)\n' "$mode"; return; }
	[ "$mode" != none ] && lag50=$(ms "${R[$mode,$r,lag_p50_ns]}") && lag99=$(ms "${R[$mode,$r,lag_p99_ns]}")
	[ "${R[$mode,$r,pages_p50]}" != -1 ] && pages="${R[$mode,$r,pages_p50]}/${R[$mode,$r,pages_p99]}"
	printf '%-10s %9s %9s %9s %9s %7s %10s %10s %11s %9s %9s\n' "$mode" "${R[$mode,$r,orders_per_s]}" \
		"$(ms "${R[$mode,$r,ack_p50_ns]}")" "$(ms "${R[$mode,$r,ack_p99_ns]}")" \
		"$(ms "${R[$mode,$r,ack_p999_ns]}")" \
		"$(awk -v s="${R[$mode,$r,syncs]}" -v t="$seconds" 'BEGIN{printf "%.0f", s/t}')" \
		"$(ms "${R[$mode,$r,stall_p50_ns]}")" "$(ms "${R[$mode,$r,stall_p99_ns]}")" "$pages" \
		"$lag50" "$lag99"
}
hdr() {
	printf '%-10s %9s %9s %9s %9s %7s %10s %10s %11s %9s %9s\n' mode orders/s "ack p50" "ack p99" \
		"ack p99.9" syncs/s "stall p50" "stall p99" "pages/sync" "lag p50" "lag p99"
}
echo "capacity (orders flat out):"
hdr
for mode in "${modes[@]}"; do row "$mode" 0; done
echo
echo "the same load ($rate orders/s):"
hdr
for mode in "${modes[@]}"; do row "$mode" "$rate"; done
echo
echo "where the CPU went in the capacity runs (% of one core; the machine has $(nproc)):"
printf '%-10s %12s %15s %10s %10s\n' mode "engine loop" "region threads" "md server" "load"
for mode in "${modes[@]}"; do
	[ -n "${R[$mode,0,cpu_engine]:-}" ] || continue
	printf '%-10s %11s%% %14s%% %9s%% %9s%%\n' "$mode" "${R[$mode,0,cpu_engine]}" \
		"${R[$mode,0,cpu_library]}" "${R[$mode,0,cpu_md]}" "${R[$mode,0,cpu_load]}"
done
echo

if [ ${#ratios[@]} -gt 0 ]; then
	r=$(printf '%s\n' "${ratios[@]}" | median)
	printf 'capacity with pagetrack against none, run by run: %s%%\n' "$(IFS=/; echo "${ratios[*]}")"
	awk -v r="$r" 'BEGIN {
		printf "target: capacity with pagetrack >= 90%% of none:     %6.1f%%   %s\n", r, (r >= 90 ? "met" : "MISSED") }'
fi
if [ -n "${R[pagetrack,$rate,stall_p50_ns]:-}" ] && [ -n "${R[fullcopy,$rate,stall_p50_ns]:-}" ]; then
	awk -v p="${R[pagetrack,$rate,stall_p50_ns]}" -v f="${R[fullcopy,$rate,stall_p50_ns]}" 'BEGIN {
		r = p ? f / p : 0
		printf "target: stall per sync >= 50x below the full copy:  %6.0fx   %s\n", r, (r >= 50 ? "met" : "MISSED") }'
fi
if [ -n "${R[pagetrack,$rate,lag_p99_ns]:-}" ]; then
	awk -v l="${R[pagetrack,$rate,lag_p99_ns]}" 'BEGIN {
		printf "target: replica lag p99 <= 5 ms:                    %6.2f ms %s\n", l / 1e6, (l <= 5e6 ? "met" : "MISSED") }'
fi
exit $status
