"""pytest plugin (registered by tests/conftest.py): parallel runs, skips that CI must not have,
and a report of where the time went. docs/testing.md ("Speed: parallel runs") explains it.

1. Groups for pytest-xdist (``-n N --dist loadgroup``, as ``./dev test`` runs it). Every test
   gets an ``xdist_group``: by default the name of its file, so that a file's tests run in one
   worker, in their order, with their module fixtures made once (several files order their
   tests on purpose, e.g. a fuzz run before the check that the daemon survived it). Files in
   SPLIT have independent tests and are spread over all workers test by test; files in SHARED
   share one group (one worker) because they share something on the machine.
   Without xdist the groups are ignored.

2. ``--hb-ci`` (or ``PUMAGUARD_HB_CI=1`` in the environment; ``./dev test`` passes the option
   itself, because ``sudo`` drops the environment): the run fails when a test skipped whose
   reason is not in ALLOWED_SKIPS, and when no test passed. Every skip and its reason is
   printed at the end either way (and written to the report).

3. ``--hb-report=FILE``: a JSON summary of the run (counts, wall time, the slowest tests,
   every skip) that ``./dev test`` prints at its end.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

#: Files whose tests are independent of each other and slow enough to be worth spreading
#: over the workers test by test (each test makes its own daemon, lab and folders).
SPLIT: frozenset[str] = frozenset(
    {
        # each test boots its own container (about 50 s before it starts): alone it was a
        # third of the PyPI run's wall time in one worker
        "systemd/test_systemd_e2e.py",
        "systemd/test_systemd_unit.py",  # the same: a container per test, ~37 s each
    }
)

#: Files that must not run at the same time as each other: group name -> files.
SHARED: dict[str, tuple[str, ...]] = {}
# (None today. The systemd tests need no group: every container, overlay, cgroup and
# namespace is named after its test process, the cached root file systems are built under a
# lock, and each worker builds its own .deb, 8 s.)

#: Skips that are expected where ``./dev test`` installed everything: (test id pattern,
#: reason pattern, why it is allowed). Anything else that skips fails the run under --hb-ci.
#: Keep it short; docs/testing.md lists the same.
ALLOWED_SKIPS: tuple[tuple[str, str, str], ...] = ()

_TESTS = Path(__file__).resolve().parent
_GROUP_SUFFIX = re.compile(r"@[^@\[\]/]*$")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pumaguard-hb")
    group.addoption(
        "--hb-ci",
        action="store_true",
        default=os.environ.get("PUMAGUARD_HB_CI", "").lower() in ("1", "true", "yes"),
        help="fail on a skip not in tests/parallel.py ALLOWED_SKIPS, and when nothing passed "
        "(also PUMAGUARD_HB_CI=1)",
    )
    group.addoption("--hb-report", metavar="FILE", help="write a JSON summary of the run")
    group.addoption(
        "--hb-order-from",
        metavar="FILE",
        help="an earlier run's --hb-report: start the longest groups first",
    )


def _rel(item: pytest.Item) -> str:
    path = Path(str(item.fspath)).resolve()
    try:
        return path.relative_to(_TESTS).as_posix()
    except ValueError:
        return path.name


def group_of(rel: str) -> str | None:
    """The xdist group of a test file (tests/-relative), or None: spread test by test."""
    for name, files in SHARED.items():
        if rel in files:
            return name
    if rel in SPLIT:
        return None
    return rel


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups (it registers later)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    units: dict[str, list[pytest.Item]] = {}  # a group, or one test outside any group
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None:  # else the test chose its own
            name = group_of(_rel(item))
            if name is not None:
                item.add_marker(pytest.mark.xdist_group(name))
                mark = item.get_closest_marker("xdist_group")
        unit = str(mark.args[0]) if mark and mark.args else item.nodeid
        units.setdefault(unit, []).append(item)
    # xdist hands out the units in this order: the longest first (as an earlier run measured
    # them), so that no long file starts last and runs alone at the end. The same file gives
    # every worker the same order; a test's order within its group is kept.
    earlier = _durations(config.getoption("hb_order_from"))
    if earlier:
        order = sorted(
            units.values(), key=lambda its: -sum(earlier.get(i.nodeid, 0.0) for i in its)
        )
        items[:] = [i for its in order for i in its]


def _durations(path: str | None) -> dict[str, float]:
    if not path:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
        return {str(k): float(v) for k, v in doc.get("durations", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def skip_allowed(nodeid: str, reason: str) -> bool:
    return any(re.search(test, nodeid) and re.search(why, reason) for test, why, _ in ALLOWED_SKIPS)


class _Recorder:
    """Collects what the reports say (in the xdist controller, or the only process)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.start = time.monotonic()
        self.durations: dict[str, float] = {}
        self.outcomes: dict[str, str] = {}
        self.skips: list[tuple[str, str]] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = _GROUP_SUFFIX.sub("", report.nodeid)  # xdist adds "@group" under loadgroup
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + report.duration
        if report.skipped:
            lr = report.longrepr
            reason = str(lr[2]) if isinstance(lr, (tuple, list)) and len(lr) == 3 else str(lr)
            if hasattr(report, "wasxfail"):
                return
            self.skips.append((nodeid, reason.removeprefix("Skipped: ")))
            self.outcomes[nodeid] = "skipped"
        elif report.failed:
            self.outcomes[nodeid] = "failed"
        elif report.when == "call":
            self.outcomes.setdefault(nodeid, "passed")

    def bad_skips(self) -> list[tuple[str, str]]:
        return [(n, r) for n, r in self.skips if not skip_allowed(n, r)]

    def passed(self) -> int:
        return sum(1 for o in self.outcomes.values() if o == "passed")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        strict = bool(self.config.getoption("hb_ci"))
        problems = []
        if strict and self.bad_skips():
            problems.append(f"{len(self.bad_skips())} test(s) skipped that must run here")
        if strict and self.passed() == 0 and exitstatus in (0, 5):
            problems.append("no test passed")
        self.problems = problems
        if problems and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        path = self.config.getoption("hb_report")
        if path:
            counts: dict[str, int] = {}
            for outcome in self.outcomes.values():
                counts[outcome] = counts.get(outcome, 0) + 1
            slowest = sorted(self.durations.items(), key=lambda kv: -kv[1])[:25]
            by_file: dict[str, float] = {}
            for nodeid, secs in self.durations.items():
                f = nodeid.split("::")[0]
                by_file[f] = by_file.get(f, 0.0) + secs
            doc: dict[str, Any] = {
                "wall_s": round(time.monotonic() - self.start, 1),
                "exitstatus": int(session.exitstatus),
                "counts": counts,
                "slowest": [[n, round(d, 2)] for n, d in slowest],
                "durations": {n: round(d, 2) for n, d in sorted(self.durations.items())},
                "by_file": {
                    f: round(d, 1) for f, d in sorted(by_file.items(), key=lambda kv: -kv[1])
                },
                "skips": [
                    {"test": n, "reason": r, "allowed": skip_allowed(n, r)} for n, r in self.skips
                ],
                "problems": problems,
            }
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(doc, indent=1) + "\n")

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if self.skips:
            tr.section(f"skips ({len(self.skips)})")
            for nodeid, reason in self.skips:
                word = "allowed" if skip_allowed(nodeid, reason) else "NOT ALLOWED"
                tr.write_line(f"{word:11} {nodeid}: {reason}")
        for problem in getattr(self, "problems", []):
            tr.write_line(
                f"FAILED (--hb-ci): {problem}; the allowed skips are in tests/parallel.py "
                "ALLOWED_SKIPS (docs/testing.md)",
                red=True,
                bold=True,
            )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): tests that run in one xdist worker")
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller sees every report
    config.pluginmanager.register(_Recorder(config), "pumaguard_hb_recorder")
