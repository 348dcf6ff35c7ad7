#!/usr/bin/env bash
# softdirty-emulated: the soft-dirty backend's own logic, run by softdirty-trackers, softdirty-converge and region-precopy against a soft-dirty kernel emulated with uffd-wp.
#
# Most kernels this project is tested on lack CONFIG_MEM_SOFT_DIRTY, and
# there the two real tests skip.  PT_SOFTDIRTY_EMULATE=1 makes them put the
# emulation of test/softdirty-emu.c under the backend first (what it checks
# and what it cannot is said there).  Taking out the backend's write freeze
# makes softdirty-converge fail here.
#
# Exit 0 pass, 1 fail (either program failed), 77 skip (the emulation needs
# uffd-wp; the programs print the reason).
set -u
O=${O:-build}
export PT_SOFTDIRTY_EMULATE=1
out=$(mktemp "${TMPDIR:-/tmp}/pagetrack-softdirty-XXXXXX")
trap 'rm -f "$out"' EXIT
failed=0 skip_reason=
for t in softdirty-trackers softdirty-converge region-precopy; do
	echo "$t, emulated:"
	if [ ! -x "$O/test/$t" ]; then
		echo "FAIL: $O/test/$t not built"
		exit 1
	fi
	"$O/test/$t" >"$out" 2>&1
	rc=$?
	cat "$out"
	case $rc in
	0) ;;
	77) skip_reason=$(grep '^skip:' "$out" | tail -n 1)
	    skip_reason=${skip_reason:-"skip: $t skipped"} ;;
	*) failed=1 ;;
	esac
done
[ "$failed" = 1 ] && exit 1
if [ -n "$skip_reason" ]; then
	echo "$skip_reason"
	exit 77
fi
exit 0
