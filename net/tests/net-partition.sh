# net-partition: the writer's host cut off from the NATS majority by the network (its link down, its processes going on; net/cluster.sh --partition, as root in network namespaces): the standby promotes itself with the majority; once the link is back the old publisher finds the term marker and is fenced, the old engine says it was deposed and stops; an engine on the promoted standby (on its host) carries on and the load finds it through the lease; no order acked as replicated lost, the two md servers converge and served no epoch with two contents.  Not in make check (about 2 minutes): make check-partition.
set -u
O=${O:-build}
out=$(O=$O net/cluster.sh --partition --seconds "${PARTITION_SECONDS:-100}" 2>&1)
rc=$?
echo "$out"
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "the partition drill failed (exit $rc)"; exit 1; }
echo "$out" | grep -q '^>>> failover drill: the writer.s host cut off' ||
	{ echo "no link was cut"; exit 1; }
echo "$out" | grep -q '^>>> promoted .* to term 1 after epoch [1-9]' ||
	{ echo "the standby did not promote itself"; exit 1; }
echo "$out" | grep -q '^>>> pagetrack publish: .*this publisher is fenced' ||
	{ echo "the old publisher was not fenced"; exit 1; }
echo "$out" | grep -q '^>>> exchange-engine: deposed' ||
	{ echo "the old engine did not say it was deposed"; exit 1; }
echo "$out" | grep -Eq '^crash drill  [1-9][0-9]* reconnections.* [1-9][0-9]* sessions checked: 0 durable-acked commands lost of [1-9][0-9]*, 0 acked commands lost' ||
	{ echo "unexpected drill result: $(echo "$out" | grep '^crash drill')"; exit 1; }
echo "$out" | grep -q ' 2 of 2 md servers converged' ||
	{ echo "the md servers did not follow the new engine"; exit 1; }
echo "$out" | grep -q '^exchange-load: the engine is at .*(lease of stream exchange: term 1,' ||
	{ echo "the load did not find the new engine through the lease"; exit 1; }
echo "$out" | grep -q '^             0 epochs served with two contents' ||
	{ echo "the md servers' epochs: $(echo "$out" | grep 'two contents')"; exit 1; }
exit 0
