#!/usr/bin/env bash
# demo.sh - the exchange end to end: one engine, two market-data servers and
# the load for a while, then the summary and the consistency check.
#
#   apps/exchange/demo.sh [--seconds N] [--crash] [--track HOW] [--dir DIR] [--keep]
#
#   --seconds N  how long the load runs (default 10)
#   --crash      the crash drill: kill -9 the engine halfway, restart it from
#                its data directory; the md servers carry on, the load
#                reconnects and checks that no order acked as durable was lost
#   --kills N    with --crash: kill it N times, evenly spread (default 1)
#   --shared     the md servers share one copy (pagetrack's shared replica)
#                instead of keeping one private copy each
#   --track HOW  the engine's tracking: chunks (default), plain, adaptive or
#                adaptive,chunks
#   --dir DIR    work there (created if missing, left in place) instead of a
#                temporary directory that is removed at the end
#
# Everything listens on 127.0.0.1 only, on ports the kernel picks.  Exit
# status: 0 when every check passed, 1 when one failed, 2 on a usage error.
set -u
O=${O:-build}
B=$O/apps/exchange
seconds=10 crash=0 kills=1 dir= keep=0 shared=() track=chunks

while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=${2:?--seconds needs a value}; shift ;;
	--crash) crash=1 ;;
	--kills) kills=${2:?--kills needs a value}; shift ;;
	--shared) shared=(--shared) ;;	# the name follows the work dir, below
	--track) track=${2:?--track needs a value}; shift ;;
	--dir) dir=${2:?--dir needs a value}; keep=1; shift ;;
	-h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $seconds in ''|*[!0-9]*) echo "demo.sh: --seconds wants whole seconds" >&2; exit 2 ;; esac
[ "$seconds" -ge 2 ] || { echo "demo.sh: --seconds must be at least 2" >&2; exit 2; }
case $kills in ''|*[!0-9]*|0) echo "demo.sh: --kills wants a count >= 1" >&2; exit 2 ;; esac

for b in exchange-engine exchange-md exchange-load; do
	[ -x "$B/$b" ] || { echo "demo.sh: $B/$b is missing: run make first" >&2; exit 1; }
done

if [ -n "$dir" ]; then
	mkdir -p "$dir" || exit 1
	[ -z "$(ls -A "$dir")" ] || { echo "demo.sh: $dir is not empty" >&2; exit 2; }
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/pagetrack-exchange.XXXXXX") || exit 1
fi

# A shared copy lives in /dev/shm under a name of this run, removed at the end.
shm_name=exchange-demo-$$
[ ${#shared[@]} -gt 0 ] && shared=(--shared --shared-name "$shm_name")

# shellcheck source=procs.sh
. "$(dirname "$0")/procs.sh"
cleanup() {
	stop_pids
	[ ${#shared[@]} -gt 0 ] && rm -f "/dev/shm/pagetrack-$shm_name" "/dev/shm/pagetrack-$shm_name".*
	[ "$keep" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


start_engine() {
	rm -f "$dir/engine.port"	# a restart must not find the old one
	"$B/exchange-engine" --dir "$dir/data" --port "${1:-0}" --port-file "$dir/engine.port" \
		--track "$track" --status "$dir/engine.status" >>"$dir/engine.log" 2>&1 &
	engine=$!
	pids+=("$engine")
	wait_port "$dir/engine.port" "$engine" || { echo "demo.sh: the engine did not start:"; cat "$dir/engine.log"; exit 1; }
}

echo "pagetrack exchange demo: one matching engine writes its order books into a"
echo "pagetrack region; two market-data servers answer queries from replicas that"
echo "copy only the pages written since their last refresh.  Work dir: $dir"
[ ${#shared[@]} -gt 0 ] && echo "Shared copy: /dev/shm/pagetrack-$shm_name"
echo

start_engine 0
eport=$(cat "$dir/engine.port")
mds=()
for m in 1 2; do
	"$B/exchange-md" --dir "$dir/data" "${shared[@]}" --port-file "$dir/md$m.port" >"$dir/md$m.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_port "$dir/md$m.port" "$pid" || { echo "demo.sh: md server $m did not start:"; cat "$dir/md$m.log"; exit 1; }
	mds+=(--md "$(cat "$dir/md$m.port")")
done
sed 's/^/  /' "$dir/engine.log" "$dir/md1.log" "$dir/md2.log"
echo

"$B/exchange-load" --engine "$eport" "${mds[@]}" --status "$dir/engine.status" \
	--seconds "$seconds" --progress >"$dir/load.out" &
load=$!
pids+=("$load")
if [ "$crash" = 1 ]; then
	# Kill i of N comes at i/(N+1) of the run, in tenths of seconds from
	# the load's start, or at once if the restart before it took longer.
	started=$(date +%s%N)
	for i in $(seq "$kills"); do
		at=$((seconds * 10 * i / (kills + 1)))
		elapsed=$((($(date +%s%N) - started) / 100000000))
		[ "$at" -gt "$elapsed" ] && sleep "$(((at - elapsed) / 10)).$(((at - elapsed) % 10))"
		echo
		echo ">>> crash drill: kill -9 of the engine (pid $engine)"
		kill -9 "$engine"
		wait "$engine" 2>/dev/null
		keep_pids=()
		for p in "${pids[@]}"; do [ "$p" = "$engine" ] || keep_pids+=("$p"); done
		pids=("${keep_pids[@]}")
		sleep 0.5
		echo ">>> restarting it from $dir/data"
		start_engine "$eport"
		grep recovered "$dir/engine.log" | tail -n 1 | sed 's/^/>>> /'
	done
fi
wait "$load"
rc=$?
cat "$dir/load.out"

# Stop the servers; each must exit cleanly.
for p in "${pids[@]}"; do [ -n "$p" ] && [ "$p" != "$load" ] && kill "$p" 2>/dev/null; done
for p in "${pids[@]}"; do
	[ -n "$p" ] && [ "$p" != "$load" ] || continue
	wait "$p" 2>/dev/null
	s=$?
	if [ "$s" != 0 ]; then
		echo "FAIL: a server exited with status $s"
		rc=1
	fi
done
pids=()
if [ "$crash" = 1 ] && ! grep -q '^crash drill  [1-9]' "$dir/load.out"; then
	echo "FAIL: the crash drill did not happen (no reconnection)"
	rc=1
fi
if [ "$rc" != 0 ]; then
	echo
	echo "logs:"
	for f in engine md1 md2; do sed "s/^/  $f: /" "$dir/$f.log"; done
fi
exit "$rc"
