#!/bin/sh
# Run every benchmark (bench/run_all.py) and print the figures; see docs/performance.md.
#   sudo bench/run_all.sh [--quick] [--interp pypi|debian] [--timeout S]
# Needs root (network namespaces), fping, and the two virtualenvs of `sudo ./dev setup`:
# .venv (PyPI, icmplib 3.x) and .venv-debian (Debian's python3-*, icmplib 2.1.1).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "bench/run_all.sh: run as root (sudo bench/run_all.sh): it creates network namespaces" >&2
	exit 1
fi
for tool in ip fping; do
	command -v "$tool" >/dev/null || { echo "bench/run_all.sh: $tool missing (sudo ./dev setup)" >&2; exit 1; }
done
if [ ! -x .venv/bin/python ] && [ ! -x .venv-debian/bin/python ]; then
	echo "bench/run_all.sh: no .venv or .venv-debian (sudo ./dev setup)" >&2
	exit 1
fi
# the driver only needs the standard library, PyYAML and the source tree
PY=.venv/bin/python
[ -x "$PY" ] || PY=.venv-debian/bin/python
PYTHONPATH="$(pwd):$(pwd)/cli" exec "$PY" bench/run_all.py "$@"
