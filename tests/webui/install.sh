#!/bin/sh
# Installs the real PumaGuard web UI (PyPI "pumaguard" 25.x) for the tests, into its own
# virtualenv .cache/webui-venv (override: PUMAGUARD_WEBUI_VENV), the way
# ../shared/notes/pumaguard-webui.md says: the web UI imports only flask, flask-cors,
# zeroconf, PyYAML and requests, so those are installed normally and the wheel alone with
# --no-deps (it declares torch, tensorflow, ultralytics … which it does not need to serve
# its API). It declares Python >= 3.12 but runs on 3.11: --ignore-requires-python there only.
# Idempotent and quiet: prints one line when it installs something. Run as root on a fresh
# Debian 12 or 13 (it installs python3-venv if missing).
set -eu
cd "$(dirname "$0")/../.."
VERSION=${PUMAGUARD_WEBUI_VERSION:-25.post66}
VENV=${PUMAGUARD_WEBUI_VENV:-.cache/webui-venv}
PY=/usr/bin/python3
STAMP="$VENV/.installed-pumaguard-$VERSION"
# setuptools: pumaguard imports it, and Python 3.12+ venvs (Debian 13) no longer bring it.
DEPS="flask flask-cors zeroconf PyYAML requests setuptools"

if [ -f "$STAMP" ] && "$VENV/bin/python" -c 'import pumaguard.web_ui' >/dev/null 2>&1; then
	exit 0
fi
echo "==> PumaGuard web UI $VERSION for the tests ($VENV)"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# pip's output goes to a log shown only when a step fails
quiet() {
	if ! "$@" >"$tmp/log" 2>&1; then
		cat "$tmp/log" >&2
		echo "tests/webui/install.sh: failed: $*" >&2
		exit 1
	fi
}
if [ ! -x "$VENV/bin/pip" ]; then
	rm -rf "$VENV"
	mkdir -p "$(dirname "$VENV")"
	quiet "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC2086
quiet "$VENV/bin/pip" install -q $DEPS

# The wheel is pure Python (py3-none-any) but says Requires-Python >= 3.12: ask pip for a
# 3.12 download, then install that one file without its dependencies.
quiet "$VENV/bin/pip" download -q --no-deps --python-version 3.12 --only-binary=:all: \
	"pumaguard==$VERSION" -d "$tmp"
ignore=""
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
	ignore="--ignore-requires-python"
fi
# shellcheck disable=SC2086
quiet "$VENV/bin/pip" install -q --no-deps $ignore "$tmp"/pumaguard-*.whl
quiet "$VENV/bin/python" -c 'import pumaguard.web_ui'
rm -f "$VENV"/.installed-pumaguard-*
touch "$STAMP"
