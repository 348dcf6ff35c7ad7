# exchange-demo: make demo's run, shortened: engine, two md servers and load; every copy equals the engine.
# The demo exits 0 only when the live checks found every replica equal to
# the engine at the same epoch and every copy converged after the load.
set -u
O=${O:-build}
out=$(O=$O apps/exchange/demo.sh --seconds 3 2>&1)
rc=$?
echo "$out"
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "demo failed (exit $rc)"; exit 1; }
# The summary must show checks that ran, not only the absence of failures.
echo "$out" | grep -Eq '^consistency  live: [1-9][0-9]* checks, [1-9][0-9]* equal' ||
	{ echo "no live consistency check ran"; exit 1; }
echo "$out" | grep -q ' 2 of 2 md servers converged' || { echo "the copies did not converge"; exit 1; }
echo "$out" | grep -q '^RESULT: PASS' || exit 1
exit 0
