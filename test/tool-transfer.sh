#!/usr/bin/env bash
# tool-transfer: pagetrack import and export: a file in, the same bytes out; no overwrite, no link followed, no FIFO waited on.
set -u
O=${O:-build}
PT=$O/pagetrack
fails=0
work=$(mktemp -d "${TMPDIR:-/tmp}/pagetrack-transfer-XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

[ -x "$PT" ] || { echo "FAIL: $PT not built"; exit 1; }

# A file whose size is not a page multiple: the padding reads back zero.
head -c 1234567 /dev/urandom >"$work/in"
if "$PT" import "$work/in" "$work/r" >"$work/out" 2>&1; then ok "import"; else fail "import: $(cat "$work/out")"; fi
grep -q "at epoch 1, durable and checkpointed" "$work/out" || fail "import did not say what it made"
"$PT" verify "$work/r" >/dev/null 2>&1 || fail "the imported region does not verify"
if "$PT" export "$work/r" "$work/back" >"$work/out" 2>&1; then ok "export"; else fail "export: $(cat "$work/out")"; fi
cmp -n 1234567 "$work/in" "$work/back" >/dev/null || fail "exported bytes differ from the imported file"
size=$(stat -c %s "$work/back")
[ $((size % $(getconf PAGESIZE))) = 0 ] && [ "$size" -ge 1234567 ] || fail "export size $size"
[ -z "$(tail -c +1234568 "$work/back" | tr -d '\0')" ] || fail "the padding is not zero"

# No overwrite without --force; --force replaces.
echo keep >"$work/exists"
"$PT" export "$work/r" "$work/exists" >/dev/null 2>&1 && fail "export replaced a file without --force"
[ "$(cat "$work/exists")" = keep ] || fail "the existing file changed"
"$PT" export --force "$work/r" "$work/exists" >/dev/null 2>&1 || fail "export --force"
cmp -n 1234567 "$work/in" "$work/exists" >/dev/null || fail "export --force wrote other bytes"

# Never through a link planted at FILE.
echo victim >"$work/victim"
ln -s "$work/victim" "$work/link"
"$PT" export --force "$work/r" "$work/link" >/dev/null 2>&1 && fail "export wrote through a symbolic link"
[ "$(cat "$work/victim")" = victim ] || fail "the link's target changed"

# import: a FIFO is refused at once, an empty file and an existing region too.
mkfifo "$work/fifo"
timeout 10 "$PT" import "$work/fifo" "$work/r2" >/dev/null 2>&1
rc=$?
[ "$rc" = 124 ] && fail "import waited on a FIFO"
[ "$rc" = 0 ] && fail "import took a FIFO"
: >"$work/empty"
"$PT" import "$work/empty" "$work/r3" >/dev/null 2>&1 && fail "import of an empty file"
"$PT" import "$work/in" "$work/r" >/dev/null 2>&1 && fail "import over an existing region"
"$PT" import "$work/in" >/dev/null 2>&1; [ $? = 64 ] || fail "import without DIR is not a usage error"
"$PT" export "$work/nothere" "$work/x" >/dev/null 2>&1 && fail "export of a missing region"

[ "$fails" = 0 ] && echo "all transfer checks passed"
[ "$fails" = 0 ]
