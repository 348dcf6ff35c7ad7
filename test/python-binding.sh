#!/usr/bin/env bash
# python-binding: the Python binding (python/) over the built shared library.
# Runs python/tests/test_binding.py with Debian's python3 (PYTHON overrides).
# Exit 0 pass, 1 fail, 77 skip with the reason.
set -u
O=${O:-build}
py=${PYTHON:-/usr/bin/python3}
lib=$O/libpagetrack.so.0

[ -x "$py" ] || { echo "skip: $py is missing (apt-get install python3)"; exit 77; }
[ -e "$lib" ] || { echo "skip: $lib is missing (make builds it)"; exit 77; }
# A sanitizer build's library needs its runtime loaded first, which an
# uninstrumented interpreter does not do.
if ldd "$lib" 2>/dev/null | grep -q 'lib[at]san'; then
	echo "skip: $lib is built with a sanitizer; python3 cannot load it"
	exit 77
fi
PAGETRACK_LIB=$lib PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} \
	timeout -k 5 120 "$py" python/tests/test_binding.py
