#!/bin/sh
# Host packages the systemd end-to-end tests (tests/systemd/) need:
# systemd-nspawn and mmdebstrap to boot a real systemd in a container, and
# the build dependencies of the Debian package (build-essential too:
# dpkg-checkbuilddeps requires it). Run as root; idempotent.
# With --list: print the package names only (./dev installs them itself).
set -eu
export DEBIAN_FRONTEND=noninteractive
pkgs="systemd-container mmdebstrap iproute2 util-linux build-essential dpkg-dev fakeroot
debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian"
if [ "${1:-}" = --list ]; then
	echo $pkgs
	exit 0
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "==> apt-get install$missing"
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
