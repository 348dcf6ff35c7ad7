#!/usr/bin/env bash
# cluster.sh - the failover drill of net/demo.sh across three hosts: a
# three-node NATS cluster (an R3 stream and lease bucket); host A holding
# the engine, its publisher (holding the writer's lease, advertising the
# engine's address) and one node; host B the standby follower (`follow
# --standby --auto-promote`, advertising the standby engine's address), two
# md servers on replicas of its directory, the engine started after the
# promotion, and one node; host C the third node and the load, which finds
# the engine through the lease (`exchange-load --nats`).
#
#   net/cluster.sh [--partition | --loopback] [--seconds N] [--keep]
#
#   (default)    midway, everything on host A is killed -9 (publisher, NATS
#                node, the engine it publishes) and A's link is cut; B's
#                standby promotes itself with the majority (B, C), an
#                engine starts on its directory, on B, and the load finds
#                it and carries on
#   --partition  A's link is cut instead, its processes going on: A's node
#                has no quorum, so the old engine's orders are acked no
#                more; B promotes itself; then the link comes back, the old
#                publisher finds the term marker, and the old publisher and
#                engine say they were deposed and stop
#   --loopback   the hosts on 127.0.0.1 ports even as root (as without root)
#   --seconds N  how long the load runs (default 60; the drill is midway)
#   --lease-ms N the writer's lease (default 1000)
#   --leaders-elsewhere  just before the drill, move the Raft leaders of the
#                stream and of the lease and snapshot buckets off A's node
#                (stream leader step-downs): the failover then waits for no
#                NATS election (4 to 9 s in nats-server), so its time is
#                pagetrack's own: the lease, the promotion, the engine, the
#                load finding it
#   --keep       leave the work directory in place
#
# As root, hosts A, B and C are network namespaces made here (named after
# this process, on a private 10.77.X.0/24 the host does not route, joined by
# a bridge in a fourth namespace) and removed at the end, also on failure or
# ^C; the host's own interfaces are not touched.  Without root (or when the
# namespaces cannot be made) the same processes run on 127.0.0.1 ports, a
# kill has no link to cut and --partition is refused: it says so.
#
# The engines and md servers listen on their host's address, the load on C
# connects to them across the links.  The summary (net/demo.sh's) gives the
# failover time (the drill to the first order the new engine acked), the
# orders acked at `replicated` lost (must be 0), orders/s before and after,
# and the epochs the md servers served around the switch.  Exit status as
# net/demo.sh's (0: every check passed; 77: nats-server not installed, or
# --partition without namespaces).
set -u
here=$(dirname "$0")
seconds=60 keep=() partition=0 loopback=0 lease_ms=1000 elsewhere=0
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=${2:?--seconds needs a value}; shift ;;
	--keep) keep=(--keep) ;;
	--leaders-elsewhere) elsewhere=1 ;;
	--partition) partition=1 ;;
	--loopback) loopback=1 ;;
	--lease-ms) lease_ms=${2:?--lease-ms needs a value}; shift ;;
	-h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "cluster.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $seconds in ''|*[!0-9]*) echo "cluster.sh: --seconds wants whole seconds" >&2; exit 2 ;; esac
command -v nats-server >/dev/null || { echo "cluster.sh: skip: nats-server is not installed (Debian package nats-server)"; exit 77; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/pagetrack-cluster.XXXXXX") || exit 1
# shellcheck source=../apps/exchange/procs.sh
. "$here/../apps/exchange/procs.sh"
tag=pt$$
ns=()	# the namespaces made: A B C and the switch
cleanup() {
	stop_pids
	local n
	for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null; done
	if [ ${#keep[@]} -gt 0 ]; then echo "cluster work directory kept: $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the hosts ------------------------------------------------------------

# make_hosts: namespaces $tag-a/-b/-c with a veth each to a bridge in $tag-s.
# The subnet: 10.77.X.0/24 with X from our pid, not one the host routes.
make_hosts() {
	local x h i=0
	x=$(( $$ % 250 + 1 ))
	while ip route show | grep -q "^10\.77\.$x\." && [ $i -lt 250 ]; do
		x=$(( x % 250 + 1 )); i=$((i + 1))
	done
	net=10.77.$x
	ip netns add "$tag-s" || return 1
	ns+=("$tag-s")
	ip -n "$tag-s" link add br0 type bridge || return 1
	ip -n "$tag-s" link set br0 up || return 1
	ip -n "$tag-s" link set lo up || return 1
	i=1
	for h in a b c; do
		ip netns add "$tag-$h" || return 1
		ns+=("$tag-$h")
		ip -n "$tag-$h" link set lo up || return 1
		ip -n "$tag-$h" link add eth0 type veth peer name "v$h" netns "$tag-s" || return 1
		ip -n "$tag-$h" addr add "$net.$i/24" dev eth0 || return 1
		ip -n "$tag-$h" link set eth0 up || return 1
		ip -n "$tag-s" link set "v$h" master br0 up || return 1
		eval "addr_$h=$net.$i"
		i=$((i + 1))
	done
}

mode=loopback
case $lease_ms in ''|*[!0-9]*) echo "cluster.sh: --lease-ms wants milliseconds" >&2; exit 2 ;; esac
[ "$partition" = 1 ] && [ "$loopback" = 1 ] &&
	{ echo "cluster.sh: --partition needs the namespaces: not with --loopback" >&2; exit 2; }
if [ "$loopback" = 0 ] && [ "$(id -u)" = 0 ] && make_hosts 2>"$dir/netns.err"; then
	mode=netns
else
	for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null; done
	ns=()
	why="not root"
	[ "$loopback" = 1 ] && why="--loopback"
	[ "$loopback" = 0 ] && [ "$(id -u)" = 0 ] && why="network namespaces could not be made: $(head -n 1 "$dir/netns.err")"
	if [ "$partition" = 1 ]; then
		echo "cluster.sh: skip: --partition needs network namespaces ($why)"
		exit 77
	fi
	echo "cluster.sh: $why: hosts A, B and C are processes on 127.0.0.1 ports (no link to cut)"
fi

# on HOST: the command prefix that runs a program on that host.
on() { [ "$mode" = netns ] && echo "ip netns exec $tag-$1"; }


# ---- the NATS cluster -------------------------------------------------------

declare -A host port cport npid
for h in a b c; do
	if [ "$mode" = netns ]; then
		eval "host[$h]=\$addr_$h"; port[$h]=4222; cport[$h]=6222
	else
		host[$h]=127.0.0.1
		# Free ports (procs.sh), for the nodes in loopback mode.
		if ! port[$h]=$(free_port) || ! cport[$h]=$(free_port); then
			echo "cluster.sh: no free port on 127.0.0.1"
			exit 1
		fi
	fi
done
for h in a b c; do
	mkdir -p "$dir/nats-$h"
	{
		echo "server_name: $h"
		# A node cut off (no FIN, no RST) is noticed by pings: every
		# second, two unanswered (the default, 2 minutes, keeps requests
		# routed to a dead node's replicas for minutes).
		echo "ping_interval: \"1s\""
		echo "ping_max: 2"
		# Nor would a route to it be dropped before 10 s of blocked writes.
		echo "write_deadline: \"2s\""
		echo "listen: ${host[$h]}:${port[$h]}"
		echo "jetstream { store_dir: \"$dir/nats-$h\", max_memory_store: 64MB, max_file_store: 1GB }"
		echo "cluster { name: pagetrack, listen: ${host[$h]}:${cport[$h]}, routes: ["
		for o in a b c; do
			[ "$o" = "$h" ] || echo "  nats-route://${host[$o]}:${cport[$o]}"
		done
		echo "] }"
	} >"$dir/nats-$h.conf"
	# shellcheck disable=SC2046 # the prefix is words
	$(on "$h") nats-server -c "$dir/nats-$h.conf" >"$dir/nats-$h.log" 2>&1 &
	npid[$h]=$!
	pids+=("$!")
done
# JetStream needs its meta leader, and an R3 stream three peers that know
# it: wait until every node says who leads (one that has not yet is not
# counted for placement: "no suitable peers").
ok=0
for i in $(seq 400); do
	n=0
	for h in a b c; do grep -q "metadata leader" "$dir/nats-$h.log" && n=$((n + 1)); done
	[ "$n" = 3 ] && { ok=1; break; }
	sleep 0.05
done
if [ "$ok" = 0 ]; then
	echo "cluster.sh: the NATS cluster elected no JetStream leader:"
	tail -n 5 "$dir"/nats-?.log | sed 's/^/  /'
	exit 1
fi
urls="nats://${host[a]}:${port[a]},nats://${host[b]}:${port[b]},nats://${host[c]}:${port[c]}"
echo "pagetrack demo-cluster ($mode): host A engine, publisher, NATS ${host[a]}:${port[a]};"
echo "host B standby follower, 2 md servers, the engine after the failover, NATS ${host[b]}:${port[b]};"
echo "host C load, NATS ${host[c]}:${port[c]}"
[ "$mode" = netns ] && echo "namespaces $tag-a $tag-b $tag-c on $net.0/24 (bridge in $tag-s)"
echo

# ---- the drill (net/demo.sh) --------------------------------------------------

cut="ip -n $tag-s link set va down"
args=(--failover --seconds "$seconds" --nats "$urls" --replicas 3 --lease-ms "$lease_ms" "${keep[@]}")
if [ "$mode" = netns ]; then
	# A LAN: a server answers a connection in well under a millisecond, and
	# a lost one (node a) would cost the promoted standby's publisher the
	# default 2 s each time its URL comes up; and a standby connected to
	# node a notices it lost after two unanswered pings (2-3 s at the
	# default 1 s: 0.5-0.75 s here).
	args+=(--connect-timeout-ms 500 --ping-ms 250)
	args+=(--on-writer "$(on a)" --on-standby "$(on b)" --on-client "$(on c)"
		--writer-addr "${host[a]}" --standby-addr "${host[b]}")
	if [ "$partition" = 1 ]; then
		args+=(--drill "$cut" --heal "ip -n $tag-s link set va up")
	else
		args+=(--drill "kill -9 ${npid[a]}; $cut")
	fi
else
	args+=(--drill "kill -9 ${npid[a]}")
fi
if [ "$elsewhere" = 1 ]; then
	leaders=${O:-build}/net/bench/nats-leaders
	[ -x "$leaders" ] || { echo "cluster.sh: $leaders is missing: run make demo-cluster" >&2; exit 1; }
	args+=(--before-drill "$(on c) $leaders $urls a exchange KV_pagetrack-lease-exchange KV_exchange-snapshot KV_exchange-status")
fi
"$here/demo.sh" "${args[@]}"
