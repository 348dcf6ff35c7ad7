#!/usr/bin/env bash
# tool-cli: the pagetrack command: usage and exit codes, argument checks, demo (file and loop), probe (text and JSON), PAGETRACK_BACKEND.
#
# Exit 0 pass, 1 fail, 77 skip.  Parts that cannot run here (demo --loop
# without root, a forced unavailable backend when every backend works) say
# "skip" with the reason and do not fail the test.
set -u
O=${O:-build}
PT=$O/pagetrack
fails=0
work=$(mktemp -d "${TMPDIR:-/tmp}/pagetrack-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

if [ ! -x "$PT" ]; then
	echo "FAIL: $PT not built"
	exit 1
fi

# run WANT_STATUS DESCRIPTION ARGS...: stdout in $work/out, stderr in $work/err
run() {
	local want=$1 what=$2 rc
	shift 2
	"$@" >"$work/out" 2>"$work/err"
	rc=$?
	if [ "$rc" != "$want" ]; then
		fail "$what: exit $rc, want $want"
		sed 's/^/    stdout: /' "$work/out" | head -n 5
		sed 's/^/    stderr: /' "$work/err" | head -n 5
		return 1
	fi
	ok "$what (exit $rc)"
	return 0
}

# ---- usage ----------------------------------------------------------------
run 0 "--help" "$PT" --help && {
	grep -q '^Usage: pagetrack' "$work/out" || fail "--help: no usage line on stdout"
	[ -s "$work/err" ] && fail "--help wrote to stderr"
}
run 0 "--version" "$PT" --version &&
	{ grep -Eq '^pagetrack [0-9]+\.[0-9]+\.[0-9]+' "$work/out" || fail "--version: no version on stdout"; }
run 0 "probe --help" "$PT" probe --help
run 0 "demo --help" "$PT" pgwrites --help
for args in "" "--bogus" "-x" "no-such-command" "probe --bogus" "probe extra" "pgwrites --nope" "pgwrites extra"; do
	# shellcheck disable=SC2086
	run 64 "usage error: pagetrack $args" "$PT" $args && {
		[ -s "$work/err" ] || fail "pagetrack $args: no message on stderr"
		[ -s "$work/out" ] && fail "pagetrack $args: wrote to stdout"
	}
done

# ---- arguments: every subcommand alike ------------------------------------------
# Regression tests: each of these was accepted, or blamed the wrong thing.
for cmd in status verify inspect replica checkpoint; do
	run 0 "$cmd --help" "$PT" $cmd --help
done
regular_dir=$work/plain
mkdir -p "$regular_dir"
ln -s "$regular_dir" "$work/link"
# usage CASE ARGS...: exit 64 with a message on stderr naming what is wrong.
usage() {
	local what=$1
	shift
	run 64 "usage error: pagetrack $*" "$PT" "$@" && {
		grep -Eq -- "$what" "$work/err" || fail "pagetrack $*: the message does not say '$what': $(head -n 1 "$work/err")"
		[ -s "$work/out" ] && fail "pagetrack $*: wrote to stdout"
	}
}
usage 'takes no other argument' --help extra
usage 'takes no other argument' --version extra
usage 'takes no other argument' probe --help extra
usage 'takes no other argument' status --help "$regular_dir"
for t in "" "-1" "+5" " 5" "5s" "1e3" "0x10" "86401" "99999999999999999999" "-99999999999999999999"; do
	usage "bad --timeout" checkpoint --timeout="$t" "$regular_dir"
done
usage "bad --name 'a/b'" replica --name a/b "$regular_dir"
usage "bad --name ''" replica --name "" "$regular_dir"
usage "bad --name" replica --name "$(printf 'n%.0s' $(seq 201))" "$regular_dir"
for cmd in status verify inspect replica checkpoint; do
	usage 'empty name' $cmd ""
	# A symlinked DIR is refused by every subcommand, as the writer refuses it.
	run 1 "$cmd refuses a symlinked DIR" "$PT" $cmd "$work/link" &&
		{ grep -q 'Not a directory' "$work/err" || fail "$cmd on a symlink: $(cat "$work/err")"; }
	run 1 "$cmd on a directory that is no region" "$PT" $cmd "$regular_dir" &&
		{ grep -q 'Not a directory' "$work/err" && fail "$cmd on a plain directory: $(cat "$work/err")"; }
done

# ---- probe ------------------------------------------------------------------
probe_rc=0
env -u PAGETRACK_BACKEND "$PT" probe >"$work/probe" 2>"$work/err" || probe_rc=$?
if [ "$probe_rc" != 0 ] && [ "$probe_rc" != 1 ]; then
	fail "probe: exit $probe_rc"
fi
for b in uffd-wp soft-dirty mprotect; do
	grep -Eq "^$b: +(yes|no: .+)" "$work/probe" || fail "probe: no verdict for $b"
done
grep -Eq '^auto: +' "$work/probe" || fail "probe: no auto line"
cat "$work/probe"
env -u PAGETRACK_BACKEND "$PT" probe --json >"$work/json" 2>"$work/err" || true
if command -v python3 >/dev/null && python3 -c 'import json' 2>/dev/null; then
	python3 -m json.tool "$work/json" >/dev/null || fail "probe --json: not valid JSON"
	python3 - "$work/json" <<-'EOF' || fail "probe --json: wrong content"
		import json, sys
		d = json.load(open(sys.argv[1]))
		names = [b["name"] for b in d["backends"]]
		assert names == ["uffd-wp", "soft-dirty", "mprotect"], names
		for b in d["backends"]:
		    assert isinstance(b["usable"], bool)
		    assert b["usable"] or b["reason"], b
		usable = [b["name"] for b in d["backends"] if b["usable"]]
		assert d["auto"] == (usable[0] if usable else None), (d["auto"], usable)
	EOF
	ok "probe --json is valid JSON and agrees with itself"
else
	grep -q '"backends"' "$work/json" && grep -q '"auto"' "$work/json" &&
		[ "$(head -c1 "$work/json")" = "{" ] || fail "probe --json: not JSON-shaped"
	ok "probe --json looks like JSON (python3 not available for a full check)"
fi
auto=$(sed -n 's/^auto: *\([a-z-]*\).*/\1/p' "$work/probe")
usable=$(sed -n 's/^\([a-z-]*\): *yes$/\1/p' "$work/probe")
unusable=$(sed -n 's/^\([a-z-]*\): *no: .*/\1/p' "$work/probe")

# ---- demo ---------------------------------------------------------------------
# check_demo DESCRIPTION WANT_BACKEND: stdout must be exactly offsets 0 1 3 and the backend.
check_demo() {
	local want
	want=$(printf 'offset 0\noffset 1\noffset 3\nbackend %s' "$2")
	if [ "$(cat "$work/out")" != "$want" ]; then
		fail "$1: output differs"
		diff <(echo "$want") "$work/out" | sed 's/^/    /'
		return
	fi
	ok "$1: offsets 0 1 3 and none other, backend $2"
}

demo_tmp=$work/tmp
mkdir -p "$demo_tmp"
if [ -n "$auto" ] && [ "$auto" != none ]; then
	TMPDIR=$demo_tmp run 0 "demo" env -u PAGETRACK_BACKEND "$PT" pgwrites && check_demo "demo" "$auto"
fi
for b in $usable; do
	TMPDIR=$demo_tmp PAGETRACK_BACKEND=$b run 0 "demo with PAGETRACK_BACKEND=$b" "$PT" pgwrites &&
		check_demo "demo ($b)" "$b"
done
[ -z "$(ls -A "$demo_tmp")" ] || fail "demo left files behind: $(ls -A "$demo_tmp")"

if [ "$(id -u)" = 0 ]; then
	loops_before=$(losetup -a 2>/dev/null | wc -l)
	TMPDIR=$demo_tmp run 0 "demo --loop" env -u PAGETRACK_BACKEND "$PT" pgwrites --loop &&
		check_demo "demo --loop" "$auto"
	for b in $usable; do
		TMPDIR=$demo_tmp PAGETRACK_BACKEND=$b run 0 "demo --loop with $b" "$PT" pgwrites --loop &&
			check_demo "demo --loop ($b)" "$b"
	done
	# The loop device is detached at the end (autoclear may lag a moment).
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(losetup -a 2>/dev/null | wc -l)" -le "$loops_before" ] && break
		sleep 0.2
	done
	[ "$(losetup -a 2>/dev/null | wc -l)" -le "$loops_before" ] ||
		fail "demo --loop left a loop device attached: $(losetup -a)"
	[ -z "$(ls -A "$demo_tmp")" ] || fail "demo --loop left files behind"
else
	echo "skip: demo --loop needs root"
	run 1 "demo --loop as non-root fails clearly" "$PT" pgwrites --loop &&
		{ grep -q root "$work/err" || fail "demo --loop: the error does not say it needs root"; }
fi

# ---- PAGETRACK_BACKEND --------------------------------------------------------
run 1 "PAGETRACK_BACKEND=nonsense demo" env PAGETRACK_BACKEND=nonsense "$PT" pgwrites &&
	{ grep -q 'PAGETRACK_BACKEND=nonsense' "$work/err" || fail "nonsense backend: unclear error"; }
[ -s "$work/out" ] && fail "nonsense backend: demo printed offsets anyway"
run 1 "PAGETRACK_BACKEND=nonsense probe" env PAGETRACK_BACKEND=nonsense "$PT" probe &&
	{ grep -q 'PAGETRACK_BACKEND=nonsense' "$work/err" || fail "probe: nonsense backend not reported"; }

if [ -n "$unusable" ]; then
	for b in $unusable; do
		run 1 "forced unavailable backend $b: demo fails" env PAGETRACK_BACKEND="$b" "$PT" pgwrites && {
			grep -q "$b" "$work/err" || fail "forced $b: the error does not name the backend"
			grep -qi "not supported\|unavailable" "$work/err" || fail "forced $b: unclear error"
		}
		# No fallback: nothing tracked, nothing printed.
		[ -s "$work/out" ] && fail "forced $b: fell back to another backend: $(cat "$work/out")"
		run 1 "forced unavailable backend $b: probe says none" env PAGETRACK_BACKEND="$b" "$PT" probe &&
			{ grep -Eq "^auto: +none" "$work/out" || fail "probe with forced $b: auto is not none"; }
	done
else
	echo "skip: every backend is usable here, no unavailable one to force"
fi

echo
if [ "$fails" -gt 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
exit 0
