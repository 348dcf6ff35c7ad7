# exchange-failover: the engine acks at `replicated`; its host is lost (engine and publisher killed -9) under load, and then its publisher is only paused past the lease (the engine going on): the standby (`follow --standby --auto-promote`) promotes itself, an engine started on its directory carries on from its books, the load finds it through the writer's lease (the address the new holder advertises) and reconnects: no order acked as replicated lost, the two md servers converge and served no epoch with two contents, the failover time is measured to the new engine's first ack; the paused publisher, resumed, and its engine say they were deposed and stop.
set -u
O=${O:-build}
for mode in kill pause; do
	args=(--seconds 10 --failover)
	[ "$mode" = pause ] && args+=(--pause)
	echo "== net/demo.sh ${args[*]}"
	out=$(O=$O net/demo.sh "${args[@]}" 2>&1)
	rc=$?
	echo "$out"
	[ "$rc" = 77 ] && exit 77
	[ "$rc" = 0 ] || { echo "failover drill ($mode) failed (exit $rc)"; exit 1; }
	echo "$out" | grep -q '^>>> promoted .* to term 1 after epoch [1-9]' ||
		{ echo "the standby did not promote itself"; exit 1; }
	echo "$out" | grep -q '^>>> exchange-engine: recovered .*/standby at epoch [1-9]' ||
		{ echo "no engine recovered the promoted standby's books"; exit 1; }
	# Every order session reconnected to the new engine and was checked
	# against the acks it really had (not a vacuous 0 of 0).
	echo "$out" | grep -Eq '^crash drill  [1-9][0-9]* reconnections.* [1-9][0-9]* sessions checked: 0 durable-acked commands lost of [1-9][0-9]*,' ||
		{ echo "unexpected drill result: $(echo "$out" | grep '^crash drill')"; exit 1; }
	echo "$out" | grep -q '(acks: replicated)' || { echo "the engine did not ack at replicated"; exit 1; }
	echo "$out" | grep -q ' 2 of 2 md servers converged' ||
		{ echo "the md servers did not follow the new engine"; exit 1; }
	echo "$out" | grep -q '^exchange-load: the engine is at .*(lease of stream exchange: term 1,' ||
		{ echo "the load did not find the new engine through the lease"; exit 1; }
	echo "$out" | grep -Eq '^failover     [0-9]+ ms from the drill to the first order acked by the new engine' ||
		{ echo "no failover time to the new engine's first ack"; exit 1; }
	echo "$out" | grep -q '^             0 epochs served with two contents' ||
		{ echo "the md servers' epochs: $(echo "$out" | grep 'two contents')"; exit 1; }
	if [ "$mode" = pause ]; then
		echo "$out" | grep -q '^>>> exchange-engine: deposed' ||
			{ echo "the old engine did not say it was deposed"; exit 1; }
	fi
done
exit 0
