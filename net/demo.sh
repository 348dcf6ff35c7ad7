#!/usr/bin/env bash
# demo.sh - the exchange beyond one machine, on one: the engine writes its
# books into a region, `pagetrack publish` sends its epochs to a local
# nats-server (JetStream), `pagetrack follow` keeps a standby directory
# from the stream, and a market-data server answers queries from a replica
# of the standby.  The load runs, then the same consistency check as
# `make demo`: the md server reading the standby converges to the
# engine's last epoch and content.
#
#   net/demo.sh [--seconds N] [--failover [--pause]] [--keep]
#
#   --seconds N  how long the load runs (default 10)
#   --failover   the failover drill: the engine acks orders at `replicated`,
#                the publisher holds the writer's lease, the follower is a
#                standby that promotes itself when the lease lapses
#                (`follow --standby --auto-promote`).  Halfway, the engine
#                and its publisher are killed -9 (the writer's host lost);
#                once the standby promoted its directory, an engine starts
#                on it, on the same port; the load reconnects and checks
#                that no order acked as replicated was lost, the md server
#                (a replica of the standby directory) follows the new engine
#   --pause      with --failover: the publisher is SIGSTOPped past its lease
#                instead, the engine going on; once the standby promoted
#                itself the publisher is resumed: it is fenced off, the
#                engine acks nothing more and exits saying it was deposed,
#                and the new engine takes its port
#   --keep       leave the work directory (logs, data) in place
#
# For net/cluster.sh, which runs the same drill across hosts:
#   --nats URLS      use these NATS servers (a cluster, comma-separated)
#                    instead of starting one
#   --replicas N     the stream's and the lease bucket's replicas (default 1)
#   --lease-ms N     the writer's lease (default the command's, 1000 ms)
#   --on-writer CMD  run `pagetrack publish` under CMD (e.g. `ip netns exec A`)
#   --on-standby CMD run `pagetrack follow` under CMD
#   --drill CMD      with --failover: run CMD at the drill too (after the
#                    kill -9; with --heal, instead of it)
#   --heal CMD       with --failover: the writer's host is cut off by
#                    --drill, its processes going on; once the standby
#                    promoted itself, CMD heals the cut: like --pause, the
#                    old publisher and engine must say they were deposed
#
# Everything listens on 127.0.0.1 only, on ports picked at run time, and
# everything started here is stopped at the end, also on failure or ^C.
# Exit status: 0 when every check passed, 1 when one failed, 2 on a usage
# error, 77 when nats-server is not installed.
set -u
O=${O:-build}
B=$O/apps/exchange
TOOL=$O/pagetrack
seconds=10 keep=0 failover=0 pause=0
nats_urls='' replicas=1 lease=() on_writer='' on_standby='' drill='' heal=''

while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=${2:?--seconds needs a value}; shift ;;
	--keep) keep=1 ;;
	--failover) failover=1 ;;
	--pause) pause=1 ;;
	--nats) nats_urls=${2:?--nats needs URLs}; shift ;;
	--replicas) replicas=${2:?--replicas needs a value}; shift ;;
	--lease-ms) lease=(--lease-ms "${2:?--lease-ms needs a value}"); shift ;;
	--on-writer) on_writer=${2?--on-writer needs a command}; shift ;;
	--on-standby) on_standby=${2?--on-standby needs a command}; shift ;;
	--drill) drill=${2:?--drill needs a command}; shift ;;
	--heal) heal=${2:?--heal needs a command}; shift ;;
	-h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $seconds in ''|*[!0-9]*) echo "demo.sh: --seconds wants whole seconds" >&2; exit 2 ;; esac
[ "$pause" = 0 ] || [ "$failover" = 1 ] || { echo "demo.sh: --pause goes with --failover" >&2; exit 2; }
[ -z "$drill$heal" ] || [ "$failover" = 1 ] || { echo "demo.sh: --drill and --heal go with --failover" >&2; exit 2; }
[ -z "$heal" ] || [ -n "$drill" ] || { echo "demo.sh: --heal needs --drill" >&2; exit 2; }
[ -z "$heal" ] || [ "$pause" = 0 ] || { echo "demo.sh: --heal and --pause exclude each other" >&2; exit 2; }
case $replicas in [1-5]) ;; *) echo "demo.sh: --replicas wants 1 to 5" >&2; exit 2 ;; esac
[ "$seconds" -ge 2 ] || { echo "demo.sh: --seconds must be at least 2" >&2; exit 2; }
command -v nats-server >/dev/null || { echo "demo.sh: skip: nats-server is not installed (Debian package nats-server)"; exit 77; }
for b in "$B/exchange-engine" "$B/exchange-md" "$B/exchange-load" "$TOOL"; do
	[ -x "$b" ] || { echo "demo.sh: $b is missing: run make first" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/pagetrack-demo-net.XXXXXX") || exit 1
# shellcheck source=../apps/exchange/procs.sh
. "$(dirname "$0")/../apps/exchange/procs.sh"
cleanup() {
	stop_pids
	if [ "$keep" = 1 ]; then echo "work directory kept: $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN PID: until FILE has a line matching PATTERN (10 s).
wait_for() {
	local i
	for i in $(seq 200); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
fail_start() {
	echo "demo.sh: $1 did not start:"
	sed 's/^/  /' "$2"
	exit 1
}
# forget PID: reaped, not to be killed at the end.
forget() {
	local keep_pids=() p
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
	pids=("${keep_pids[@]}")
}
# stop PID NAME: SIGTERM, and the exit status must be 0.
stop() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	local s=$?
	forget "$1"
	if [ "$s" != 0 ]; then
		echo "FAIL: $2 exited with status $s"
		rc=1
	fi
}

echo "pagetrack demo-net: the exchange engine's region published to NATS JetStream,"
echo "followed into a standby directory, and an md server answering from a replica"
echo "of the standby.  Work dir: $dir"
echo

nats=
if [ -n "$nats_urls" ]; then
	url=$nats_urls
	echo "nats-servers $url"
else
	# nats-server on a port it picks (-p -1), read back from its log.
	nats-server -a 127.0.0.1 -p -1 -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
	nats=$!
	pids+=("$nats")
	wait_for "$dir/nats.log" "Listening for client connections on" "$nats" || fail_start nats-server "$dir/nats.log"
	url=nats://$(sed -n 's/.*Listening for client connections on \([0-9.:]*\).*/\1/p' "$dir/nats.log" | head -n 1)
	echo "nats-server  $url (JetStream storage $dir/nats)"
fi

ack=() standby=()
[ "$failover" = 1 ] && ack=(--ack replicated) standby=(--standby --auto-promote)
# start_engine DIR PORT LOG
start_engine() {
	rm -f "$dir/engine.port"
	"$B/exchange-engine" --dir "$1" --port "$2" --port-file "$dir/engine.port" \
		--status "$dir/engine.status" "${ack[@]}" >"$3" 2>&1 &
	engine=$!
	pids+=("$engine")
	wait_for "$dir/engine.port" "[0-9]" "$engine" || fail_start "the engine" "$3"
}
start_engine "$dir/data" 0 "$dir/engine.log"
eport=$(cat "$dir/engine.port")
echo "engine       port $eport, region in $dir/data${ack[*]:+, ${ack[*]}}"

# shellcheck disable=SC2086 # the prefix is words: a command and its arguments
$on_writer "$TOOL" publish "$dir/data" --nats "$url" --stream exchange --replicas "$replicas" "${lease[@]}" \
	>"$dir/publish.log" 2>&1 &
publish=$!
pids+=("$publish")
wait_for "$dir/publish.log" "^publishing" "$publish" || fail_start "pagetrack publish" "$dir/publish.log"
echo "publish      $dir/data -> stream exchange"

# shellcheck disable=SC2086
$on_standby "$TOOL" follow "$url" --stream exchange "$dir/standby" "${standby[@]}" "${lease[@]}" \
	>"$dir/follow.log" 2>&1 &
follow=$!
pids+=("$follow")
wait_for "$dir/follow.log" "^following" "$follow" || fail_start "pagetrack follow" "$dir/follow.log"
echo "follow       stream exchange -> $dir/standby${standby[*]:+, ${standby[*]}}"
# The md server reads the standby: not before it holds an epoch (an md
# server with nothing to show answers "no data yet", an error to the load).
wait_for "$dir/follow.log" "^epoch [1-9]" "$follow" || fail_start "pagetrack follow" "$dir/follow.log"

"$B/exchange-md" --dir "$dir/standby" --port-file "$dir/md.port" >"$dir/md.log" 2>&1 &
md=$!
pids+=("$md")
wait_for "$dir/md.port" "[0-9]" "$md" || fail_start "the md server" "$dir/md.log"
echo "exchange-md  port $(cat "$dir/md.port"), a replica of $dir/standby"
echo

"$B/exchange-load" --engine "$eport" --md "$(cat "$dir/md.port")" \
	--status "$dir/engine.status" --seconds "$seconds" --progress >"$dir/load.out" &
load=$!
pids+=("$load")
rc=0
if [ "$failover" = 1 ]; then
	# The standby must see the lease held before the writer's host goes.
	wait_for "$dir/follow.log" "lease: held by term 0" "$follow" ||
		{ echo "FAIL: the standby never saw the writer's lease"; exit 1; }
	sleep "$((seconds / 2))"
	t0=$(date +%s%N)
	if [ -n "$heal" ]; then
		echo ">>> failover drill: the writer's host cut off ($drill); engine and publisher go on"
		eval "$drill" || { echo "FAIL: $drill"; exit 1; }
	elif [ "$pause" = 1 ]; then
		echo ">>> failover drill: SIGSTOP of the publisher (pid $publish) past its lease; the engine goes on"
		kill -STOP "$publish"
	else
		echo ">>> failover drill: kill -9 of the engine (pid $engine) and its publisher (pid $publish)"
		kill -9 "$engine" "$publish"
		wait "$engine" "$publish" 2>/dev/null
		forget "$engine"
		forget "$publish"
		if [ -n "$drill" ]; then
			echo ">>> and: $drill"
			eval "$drill" || { echo "FAIL: $drill"; exit 1; }
		fi
	fi
	for i in $(seq 600); do
		grep -q "^promoted" "$dir/follow.log" && break
		sleep 0.05
	done
	grep "^promoted" "$dir/follow.log" | sed 's/^/>>> /' | grep . ||
		{ echo "FAIL: the standby did not promote itself"; sed 's/^/  follow: /' "$dir/follow.log"; exit 1; }
	if [ "$pause" = 1 ] || [ -n "$heal" ]; then
		# Resumed (or its host's link back), the old publisher is fenced off and deposes the
		# region: the old engine acks nothing more and stops.
		if [ -n "$heal" ]; then
			echo ">>> the cut healed: $heal"
			eval "$heal" || { echo "FAIL: $heal"; exit 1; }
		else
			kill -CONT "$publish"
		fi
		wait "$publish" 2>/dev/null
		s=$?
		forget "$publish"
		grep -h "deposed" "$dir/publish.log" | tail -n 1 | sed 's/^/>>> /'
		[ "$s" = 1 ] && grep -q "deposed" "$dir/publish.log" ||
			{ echo "FAIL: the old publisher exited $s without saying it was deposed"; exit 1; }
		wait "$engine" 2>/dev/null
		s=$?
		forget "$engine"
		grep -h "deposed" "$dir/engine.log" | sed 's/^/>>> /'
		[ "$s" = 1 ] && grep -q "deposed" "$dir/engine.log" ||
			{ echo "FAIL: the old engine exited $s without saying it was deposed"; exit 1; }
	fi
	start_engine "$dir/standby" "$eport" "$dir/engine2.log"
	t1=$(date +%s%N)
	grep recovered "$dir/engine2.log" | sed 's/^/>>> /'
	took="$(( (t1 - t0) / 1000000 )) ms"
	echo ">>> an engine on the promoted standby listens on port $eport $took after the drill began"
	publish=$follow	# the promoted standby publishes now
fi
wait "$load"
rc=$?
forget "$load"
cat "$dir/load.out"

# Stop the readers first, then the chain upstream; each must exit 0.
stop "$md" "exchange-md"
stop "$engine" "exchange-engine"
# The publisher and the follower catch up with the engine's last epoch.
elog=$dir/engine.log
[ "$failover" = 1 ] && elog=$dir/engine2.log
last=$(sed -n 's/.*stopped at epoch \([0-9]*\).*/\1/p' "$elog" | tail -n 1)
if [ "$failover" = 1 ]; then
	# The promoted standby is the publisher: the engine's last epoch
	# replicated is what it reports.
	for i in $(seq 100); do
		f=$(sed -n 's/^epoch \([0-9]*\) .*/\1/p' "$dir/follow.log" | tail -n 1)
		[ -n "$last" ] && [ "${f:-0}" -ge "$last" ] && break
		sleep 0.1
	done
	stop "$follow" "pagetrack follow (promoted, publishing)"
else
	for i in $(seq 100); do
		f=$(sed -n 's/^epoch \([0-9]*\) .*/\1/p' "$dir/follow.log" | tail -n 1)
		[ -n "$last" ] && [ "${f:-0}" -ge "$last" ] && break
		sleep 0.1
	done
	stop "$publish" "pagetrack publish"
	stop "$follow" "pagetrack follow"
fi
# nats-server says goodbye with status 1 on SIGTERM: not a failure.
if [ -n "$nats" ]; then
	kill "$nats" 2>/dev/null
	wait "$nats" 2>/dev/null
	forget "$nats"
fi

# The summary.
orders=$(sed -n 's/^orders *\([0-9]*\)\/s.*/\1/p' "$dir/load.out")
pub=$(grep '^stopped at epoch' "$dir/publish.log" | tail -n 1)
fol=$(grep '^stopped at epoch' "$dir/follow.log" | tail -n 1)
# After a failover the promoted standby was the last publisher.
[ "$failover" = 1 ] && pub=$fol fol="promoted, then published"
epochs=$(echo "$pub" | sed -n 's/.*(\([0-9]*\) epochs published.*/\1/p')
raw=$(echo "$pub" | sed -n 's/.*; \([0-9]*\) bytes raw.*/\1/p')
wire=$(echo "$pub" | sed -n 's/.*raw, \([0-9]*\) on the wire.*/\1/p')
lags=$(sed -n 's/^epoch [0-9]*  lag [0-9]* messages \(-\{0,1\}[0-9]*\) ms.*/\1/p' "$dir/follow.log" | sort -n)
nlags=$(echo "$lags" | grep -c .)
echo
echo "== demo-net"
echo "orders       ${orders:-?}/s"
echo "published    ${epochs:-?} epochs (engine stopped at epoch ${last:-?}); follower: ${fol#stopped at }"
if [ -n "$raw" ] && [ -n "$wire" ] && [ "$wire" -gt 0 ]; then
	echo "bytes        $raw of pages, $wire on the wire ($(echo "scale=1; $raw / $wire" | bc)x fewer, XOR + LZ4)"
fi
if [ "$nlags" -gt 0 ]; then
	echo "follower lag $(echo "$lags" | sed -n "$(( (nlags + 1) / 2 ))p") ms median, $(echo "$lags" | tail -n 1) ms max, publisher's send to applied ($nlags samples, one a second)"
fi
if [ -z "$last" ] || ! grep -q "^stopped at epoch $last " "$dir/follow.log"; then
	echo "FAIL: the follower did not reach the engine's last epoch ${last:-?}"
	rc=1
fi
if [ "$failover" = 1 ]; then
	echo "failover     the engine on the promoted standby listened $took after the drill began"
	if ! grep -q '^crash drill  [1-9]' "$dir/load.out"; then
		echo "FAIL: the load did not reconnect to the new engine"
		rc=1
	fi
fi
if [ "$rc" != 0 ]; then
	echo
	echo "logs:"
	for f in nats engine engine2 publish follow md; do
		[ -f "$dir/$f.log" ] && tail -n 20 "$dir/$f.log" | sed "s/^/  $f: /"
	done
fi
echo "RESULT: $([ "$rc" = 0 ] && echo PASS || echo FAIL)"
exit "$rc"
