#!/bin/sh
# Host packages the systemd end-to-end tests (tests/systemd/) need:
# systemd-nspawn and mmdebstrap to boot a real systemd in a container, and
# the build dependencies of the Debian package. Run as root; idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
pkgs="systemd-container mmdebstrap iproute2 util-linux dpkg-dev fakeroot
debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi
