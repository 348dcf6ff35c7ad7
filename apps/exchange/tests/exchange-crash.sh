# exchange-crash: the crash drill: kill -9 of the engine under load, twice, restart from its data directory, no durable-acked order lost.
set -u
O=${O:-build}
# 14 s: under AddressSanitizer a restart (the killed engine reaped, its
# recovery) has taken up to 3.9 s, and the load must reconnect after the
# second kill (at 9.3 s) before it ends.
out=$(O=$O apps/exchange/demo.sh --seconds 14 --crash --kills 2 2>&1)
rc=$?
echo "$out"
[ "$rc" = 0 ] || { echo "crash drill failed (exit $rc)"; exit 1; }
line=$(echo "$out" | grep '^crash drill  ')
[ -n "$line" ] || { echo "no crash drill line in the summary"; exit 1; }
# Every order session must have reconnected after each kill and been checked
# against durable acks it really had (not a vacuous 0 of 0).
echo "$line" | grep -Eq ' 8 sessions checked: 0 durable-acked commands lost of [1-9][0-9]*,' ||
	{ echo "unexpected drill result: $line"; exit 1; }
[ "$(echo "$out" | grep -c '>>> exchange-engine: recovered .* at epoch')" = 2 ] ||
	{ echo "the engine did not recover twice"; exit 1; }
echo "$out" | grep -q ' 2 of 2 md servers converged' || { echo "the md servers did not follow the restarted engine"; exit 1; }
exit 0
