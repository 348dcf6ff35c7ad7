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
#                the publisher holds the writer's lease and advertises the
#                engine's address with it, the follower is a standby that
#                promotes itself when the lease lapses (`follow --standby
#                --auto-promote`, advertising the standby engine's address),
#                two md servers read replicas of the standby directory.
#                Halfway, the engine and its publisher are killed -9 (the
#                writer's host lost); once the standby promoted its
#                directory, an engine starts on it, on the standby's host;
#                the load, which finds the engine through the lease
#                (`exchange-load --nats`), reconnects to it and checks that
#                no order acked as replicated was lost; the md servers
#                follow the new engine.  The summary adds the failover
#                time (the kill to the first order the new engine acked),
#                orders/s before and after, and the epochs the md servers
#                served around the switch (none with two contents)
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
#   --connect-timeout-ms N  publish's and follow's connection attempts
#                    (default the commands', 2000 ms)
#   --ping-ms N      how often publish and follow ping their server
#                    (default the commands', 1000 ms)
#   --on-writer CMD  run the engine and `pagetrack publish` under CMD (e.g.
#                    `ip netns exec A`)
#   --on-standby CMD run `pagetrack follow`, the md servers and the engine
#                    started after a failover under CMD
#   --on-client CMD  run the load under CMD
#   --writer-addr A  the engine listens on address A (default 127.0.0.1)
#   --standby-addr A the md servers and the engine after a failover listen on
#                    address A (default 127.0.0.1)
#   --drill CMD      with --failover: run CMD at the drill too (after the
#                    kill -9; with --heal, instead of it)
#   --before-drill CMD  with --failover: run CMD just before the drill (it
#                    must succeed)
#   --heal CMD       with --failover: the writer's host is cut off by
#                    --drill, its processes going on; once the standby
#                    promoted itself, CMD heals the cut: like --pause, the
#                    old publisher and engine must say they were deposed
#
# Everything listens on 127.0.0.1 unless told otherwise, on ports picked at
# run time, and everything started here is stopped at the end, also on
# failure or ^C.
# Exit status: 0 when every check passed, 1 when one failed, 2 on a usage
# error, 77 when nats-server is not installed.
set -u
O=${O:-build}
B=$O/apps/exchange
TOOL=$O/pagetrack
seconds=10 keep=0 failover=0 pause=0
nats_urls='' replicas=1 netopts=() on_writer='' on_standby='' on_client='' drill='' heal='' before_drill=''
waddr=127.0.0.1 saddr=127.0.0.1

while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=${2:?--seconds needs a value}; shift ;;
	--keep) keep=1 ;;
	--failover) failover=1 ;;
	--pause) pause=1 ;;
	--nats) nats_urls=${2:?--nats needs URLs}; shift ;;
	--replicas) replicas=${2:?--replicas needs a value}; shift ;;
	--lease-ms) netopts+=(--lease-ms "${2:?--lease-ms needs a value}"); shift ;;
	--connect-timeout-ms) netopts+=(--connect-timeout-ms "${2:?--connect-timeout-ms needs a value}"); shift ;;
	--ping-ms) netopts+=(--ping-ms "${2:?--ping-ms needs a value}"); shift ;;
	--on-writer) on_writer=${2?--on-writer needs a command}; shift ;;
	--on-standby) on_standby=${2?--on-standby needs a command}; shift ;;
	--on-client) on_client=${2?--on-client needs a command}; shift ;;
	--writer-addr) waddr=${2:?--writer-addr needs an address}; shift ;;
	--standby-addr) saddr=${2:?--standby-addr needs an address}; shift ;;
	--drill) drill=${2:?--drill needs a command}; shift ;;
	--heal) heal=${2:?--heal needs a command}; shift ;;
	--before-drill) before_drill=${2:?--before-drill needs a command}; shift ;;
	-h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $seconds in ''|*[!0-9]*) echo "demo.sh: --seconds wants whole seconds" >&2; exit 2 ;; esac
[ "$pause" = 0 ] || [ "$failover" = 1 ] || { echo "demo.sh: --pause goes with --failover" >&2; exit 2; }
[ -z "$drill$heal$before_drill" ] || [ "$failover" = 1 ] ||
	{ echo "demo.sh: --drill, --heal and --before-drill go with --failover" >&2; exit 2; }
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

# median: the middle of the numbers on stdin ("?" none).
median() {
	sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "?" }'
}

# The failover's figures and checks, after the load's summary: returns 1
# when one failed.  Uses t0 (the drill), t_load (the load's start), took.
summary_failover() {
	local bad=0 ack_ns ms_ack lost checked last before after
	echo "failover     the engine on the promoted standby listened $took after the drill began"
	if ! grep -q '^crash drill  [1-9]' "$dir/load.out"; then
		echo "FAIL: the load did not reconnect to the new engine"
		bad=1
	fi
	# The first order the new engine acked (at replicated), by the wall
	# clock the load read: seconds and nine digits of nanoseconds.
	ack_ns=$(sed -n 's/^failover  *first order acked after the last reconnection at \([0-9]*\)\.\([0-9]\{9\}\) .*/\1\2/p' \
		"$dir/load.out" | tail -n 1)
	if [ -n "$ack_ns" ]; then
		ms_ack=$(( (ack_ns - t0) / 1000000 ))
		echo "failover     $ms_ack ms from the drill to the first order acked by the new engine" \
			"($(sed -n 's/^failover .*, by the engine at //p' "$dir/load.out" | tail -n 1))"
	else
		echo "FAIL: the load saw no order acked after it reconnected"
		bad=1
	fi
	read -r lost checked < <(sed -n 's/.*sessions checked: \([0-9]*\) durable-acked commands lost of \([0-9]*\),.*/\1 \2/p' \
		"$dir/load.out" | tail -n 1)
	echo "lost         ${lost:-?} of ${checked:-?} orders acked at replicated before the drill" \
		"(every session checked against the new engine)"
	# orders/s: medians of the load's one-second samples before the drill
	# and after the first ack of the new engine (its first second left out).
	if [ -n "$ack_ns" ]; then
		before=$(sed -n 's/^\[ *\([0-9.]*\)s\] orders *\([0-9]*\)\/s.*/\1 \2/p' "$dir/load.err" |
			awk -v t="$(( (t0 - t_load) / 1000000 ))" '$1 * 1000 <= t { print $2 }' | median)
		after=$(sed -n 's/^\[ *\([0-9.]*\)s\] orders *\([0-9]*\)\/s.*/\1 \2/p' "$dir/load.err" |
			awk -v t="$(( (ack_ns - t_load) / 1000000 + 1000 ))" '$1 * 1000 >= t { print $2 }' | median)
		echo "orders/s     $before before the drill, $after after the new engine's first ack" \
			"(medians of one-second samples)"
	fi
	# The epochs the md servers served: none out of order in one server,
	# none served with two contents by the two, and both past the switch.
	last=$(sed -n 's/^promoted .* after epoch \([0-9]*\) .*/\1/p' "$dir/follow.log" | tail -n 1)
	awk -v last="${last:-0}" '
		FNR == 1 { f++; prev = -1; name[f] = FILENAME; sub(/.*\//, "", name[f]); sub(/\.epochs$/, "", name[f]) }
		NF != 2 || $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9a-f]+$/ { odd[f]++; next }
		{
			e = $1 + 0
			n[f]++
			if (n[f] == 1) first[f] = e
			if (e <= prev) { order[f]++; printf "  %s: epoch %d after %d\n", name[f], e, prev }
			prev = e
			lastseen[f] = e
			if ((e in hash) && hash[e] != $2) { torn++; printf "  epoch %d: hash %s and %s\n", e, hash[e], $2 }
			hash[e] = $2
			if (e <= last) { upto[f] = e; upto_h[f] = $2 } else if (!(f in from)) from[f] = e
		}
		END {
			for (i = 1; i <= f; i++) {
				printf "md epochs    %s: %d epochs served (%d to %d); the old term ends at %d: up to %s, then from %s\n",
				       name[i], n[i], first[i], lastseen[i], last, (i in upto) ? upto[i] " (hash " upto_h[i] ")" : "none",
				       (i in from) ? from[i] : "none"
				if (!(i in from)) { printf "FAIL: %s served no epoch of the new engine\n", name[i]; bad = 1 }
				if (order[i] || odd[i]) { printf "FAIL: %s: %d epochs out of order, %d odd lines\n", name[i], order[i], odd[i]; bad = 1 }
			}
			printf "             %d epochs served with two contents (same epoch, other hash) across the md servers\n", torn
			if (torn) bad = 1
			exit bad
		}
	' "$dir"/md*.epochs || bad=1
	return "$bad"
}

echo "pagetrack demo-net: the exchange engine's region published to NATS JetStream,"
echo "followed into a standby directory, and md servers answering from replicas of"
echo "the standby.  Work dir: $dir"
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

ack=() standby=() advertise=() nmd=1
if [ "$failover" = 1 ]; then
	ack=(--ack replicated) standby=(--standby --auto-promote) nmd=2
	# Chosen before the follower starts, since it advertises it.
	eport2=$(free_port) || { echo "demo.sh: no free port for the standby's engine"; exit 1; }
fi
# start_engine DIR ADDR PORT LOG PREFIX
start_engine() {
	rm -f "$dir/engine.port"
	# shellcheck disable=SC2086 # the prefix is words: a command and its arguments
	$5 "$B/exchange-engine" --dir "$1" --listen "$2" --port "$3" --port-file "$dir/engine.port" \
		--status "$dir/engine.status" "${ack[@]}" >"$4" 2>&1 &
	engine=$!
	pids+=("$engine")
	wait_for "$dir/engine.port" "[0-9]" "$engine" || fail_start "the engine" "$4"
}
start_engine "$dir/data" "$waddr" 0 "$dir/engine.log" "$on_writer"
eport=$(cat "$dir/engine.port")
echo "engine       $waddr:$eport, region in $dir/data${ack[*]:+, ${ack[*]}}"
[ "$failover" = 1 ] && advertise=(--advertise "$waddr:$eport")

# shellcheck disable=SC2086
$on_writer "$TOOL" publish "$dir/data" --nats "$url" --stream exchange --replicas "$replicas" "${netopts[@]}" \
	"${advertise[@]}" >"$dir/publish.log" 2>&1 &
publish=$!
pids+=("$publish")
wait_for "$dir/publish.log" "^publishing" "$publish" || fail_start "pagetrack publish" "$dir/publish.log"
echo "publish      $dir/data -> stream exchange${advertise[*]:+, ${advertise[*]}}"

[ "$failover" = 1 ] && advertise=(--advertise "$saddr:$eport2")
# shellcheck disable=SC2086
$on_standby "$TOOL" follow "$url" --stream exchange "$dir/standby" "${standby[@]}" "${netopts[@]}" \
	"${advertise[@]}" >"$dir/follow.log" 2>&1 &
follow=$!
pids+=("$follow")
wait_for "$dir/follow.log" "^following" "$follow" || fail_start "pagetrack follow" "$dir/follow.log"
echo "follow       stream exchange -> $dir/standby${standby[*]:+, ${standby[*]}}${advertise[*]:+ ${advertise[*]}}"
# The md server reads the standby: not before it holds an epoch (an md
# server with nothing to show answers "no data yet", an error to the load).
wait_for "$dir/follow.log" "^epoch [1-9]" "$follow" || fail_start "pagetrack follow" "$dir/follow.log"

# The md servers, each with its own replica of the standby; each logs the
# epochs it served with the books' hash (--epoch-log).
mds=() mdargs=()
for m in $(seq "$nmd"); do
	# shellcheck disable=SC2086
	$on_standby "$B/exchange-md" --dir "$dir/standby" --listen "$saddr" --port-file "$dir/md$m.port" \
		--epoch-log "$dir/md$m.epochs" >"$dir/md$m.log" 2>&1 &
	mds+=("$!")
	pids+=("$!")
	wait_for "$dir/md$m.port" "[0-9]" "$!" || fail_start "md server $m" "$dir/md$m.log"
	mdargs+=(--md "$saddr:$(cat "$dir/md$m.port")")
	echo "exchange-md  $saddr:$(cat "$dir/md$m.port"), a replica of $dir/standby"
done
echo

# The load finds the engine through the lease in the failover drill.
# A cluster that lost a node may take tens of seconds to elect leaders
# again on a loaded machine: the load waits for the new engine up to a
# minute.
where=(--engine "$waddr:$eport")
[ "$failover" = 1 ] && where=(--nats "$url" --stream exchange --reconnect-ms 60000)
t_load=$(date +%s%N)
# shellcheck disable=SC2086
$on_client "$B/exchange-load" "${where[@]}" "${mdargs[@]}" \
	--status "$dir/engine.status" --seconds "$seconds" --progress >"$dir/load.out" \
	2> >(tee "$dir/load.err" >&2) &
load=$!
pids+=("$load")
rc=0
if [ "$failover" = 1 ]; then
	# The standby must see the lease held before the writer's host goes.
	wait_for "$dir/follow.log" "lease: held by term 0" "$follow" ||
		{ echo "FAIL: the standby never saw the writer's lease"; exit 1; }
	sleep "$((seconds / 2))"
	if [ -n "$before_drill" ]; then
		echo ">>> before the drill: $before_drill"
		eval "$before_drill" 2>&1 | sed 's/^/>>>   /'
		[ "${PIPESTATUS[0]}" = 0 ] || { echo "FAIL: $before_drill"; exit 1; }
	fi
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
	start_engine "$dir/standby" "$saddr" "$eport2" "$dir/engine2.log" "$on_standby"
	t1=$(date +%s%N)
	grep recovered "$dir/engine2.log" | sed 's/^/>>> /'
	took="$(( (t1 - t0) / 1000000 )) ms"
	echo ">>> an engine on the promoted standby listens on $saddr:$eport2 $took after the drill began"
	publish=$follow	# the promoted standby publishes now
fi
wait "$load"
rc=$?
forget "$load"
cat "$dir/load.out"

# Stop the readers first, then the chain upstream; each must exit 0.
for m in $(seq "$nmd"); do stop "${mds[$((m - 1))]}" "exchange-md $m"; done
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
	summary_failover || rc=1
fi
if [ "$rc" != 0 ]; then
	echo
	echo "logs:"
	for f in nats engine engine2 publish follow md1 md2; do
		[ -f "$dir/$f.log" ] && tail -n 20 "$dir/$f.log" | sed "s/^/  $f: /"
	done
	[ -f "$dir/load.err" ] && grep -v '^\[' "$dir/load.err" | tail -n 20 | sed "s/^/  load: /"

fi
echo "RESULT: $([ "$rc" = 0 ] && echo PASS || echo FAIL)"
exit "$rc"
