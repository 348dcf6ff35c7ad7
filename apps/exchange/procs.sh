# procs.sh - what the exchange's scripts (demo, soak, bench; net/demo.sh too)
# share for the programs they start.  Sourced, not run.
#
#   pids+=($!)           after starting a program in the background
#   stop_pids            TERM every one, KILL what still runs 3 s later (the
#                        load waits for a stopped engine for its whole
#                        --reconnect-ms), then reap them all
#   wait_port FILE PID   until PID wrote its port FILE (20 s), or it died
#   free_port            a TCP port no socket uses now, outside the kernel's
#                        range of ephemeral ports (so that no outgoing
#                        connection takes it before the program binds it),
#                        for a program that must be told its port before it
#                        starts

pids=()

stop_pids() {
	local p= i
	for p in "${pids[@]}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
	for i in $(seq 30); do
		for p in "${pids[@]}"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && break; p=; done
		[ -z "$p" ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
}

wait_port() {
	local i
	for i in $(seq 400); do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

free_port() {
	local p i lo=32768 hi=60999 base span
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	# Below the ephemeral range if there is room, else above it.
	if [ "$lo" -gt 12000 ]; then
		base=10000 span=$((lo - 10000))
	elif [ "$hi" -lt 63000 ]; then
		base=$((hi + 1)) span=$((65535 - hi))
	else
		echo "free_port: ip_local_port_range $lo-$hi leaves no room outside it" >&2
		return 1
	fi
	for i in $(seq 200); do
		p=$(( base + (RANDOM * 32768 + RANDOM) % span ))
		ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
	done
	return 1
}
