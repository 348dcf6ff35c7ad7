#!/usr/bin/env bash
# Install the Debian packages the build, tests and demo need, only those
# missing.  As root it runs apt-get; otherwise it prints the line to run.
#   scripts/deps.sh        build + test + demo
#   scripts/deps.sh --ci   also what CI adds (clang for the second compiler,
#                          and the sanitizer runtimes)
set -eu
pkgs=(make gcc libc6-dev pkg-config bc util-linux libxxhash-dev libjson-c-dev python3 python3-numpy
	nats-server libnats-dev liblz4-dev libssl-dev libmicrohttpd-dev)
[ "${1:-}" = --ci ] && pkgs+=(clang libclang-rt-14-dev man-db)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
	echo "pagetrack needs these Debian packages: ${missing[*]}" >&2
	echo "run as root:  apt-get update && $line" >&2
	exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$line
