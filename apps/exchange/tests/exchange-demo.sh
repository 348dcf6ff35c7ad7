# exchange-demo: make demo's run, shortened, with private then shared replicas, then with plain tracking: every copy equals the engine.
# The demo exits 0 only when the live checks found every replica equal to
# the engine at the same epoch and every copy converged after the load.
set -u
O=${O:-build}
for mode in "" --shared "--track plain"; do
	echo "== demo.sh --seconds 3 $mode"
	out=$(O=$O apps/exchange/demo.sh --seconds 3 $mode 2>&1)
	rc=$?
	echo "$out"
	[ "$rc" = 0 ] || { echo "demo $mode failed (exit $rc)"; exit 1; }
	# The summary must show checks that ran, not only the absence of failures.
	echo "$out" | grep -Eq '^consistency  live: [1-9][0-9]* checks, [1-9][0-9]* equal' ||
		{ echo "no live consistency check ran"; exit 1; }
	echo "$out" | grep -q ' 2 of 2 md servers converged' || { echo "the copies did not converge"; exit 1; }
	echo "$out" | grep -q '^RESULT: PASS' || exit 1
	if [ "$mode" = --shared ] && ! echo "$out" | grep -q 'shared copy of'; then
		echo "the md servers did not use a shared copy"
		exit 1
	fi
	# The demo names its shared copy after its pid and removes every
	# file of it (the control block and each copy file) at the end.  Only
	# this run's: other runs of the demo on the machine have their own.
	# The engine's default is the chunk guard; --track plain turns it off.
	if [ -z "$mode" ] && ! echo "$out" | grep -q '(pagetrack, chunk guard)'; then
		echo "the engine did not track with the chunk guard"
		exit 1
	fi
	if [ "$mode" = "--track plain" ] && ! echo "$out" | grep -q '(pagetrack)'; then
		echo "the engine did not track plainly"
		exit 1
	fi
	if [ "$mode" = --shared ]; then
		shm=$(echo "$out" | sed -n 's/^Shared copy: //p')
		[ -n "$shm" ] || { echo "the demo did not name its shared copy"; exit 1; }
		left=$(ls -d "$shm" "$shm".* 2>/dev/null | wc -l)
		[ "$left" = 0 ] || { echo "the demo left $left shared-copy files in /dev/shm"; exit 1; }
	fi
done
exit 0
