"""The package layout (docs/architecture.md): which part may import which, no circles, and
modules small enough to read in one sitting. Pure: every module is parsed, none is run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "pumaguard_hb": ROOT / "pumaguard_hb",
    "pumaguard_hb_cli": ROOT / "cli" / "pumaguard_hb_cli",
}

#: the longest module, in lines
MAX_LINES = 450
#: modules still longer, each with why; the list may only shrink (docs/architecture.md)
TOO_LONG = {
    "pumaguard_hb_cli.render": "tables and the status view: to split next",
    "pumaguard_hb.inputs.discovery": "WS-Discovery wire format and the periodic run",
    "pumaguard_hb.outputs.alerts": "the alert burst and its two ways out",
    "pumaguard_hb.outputs.metrics": "the figures and their HTTP listener",
    "pumaguard_hb.stores.settings_file": "settled reads, the lock and atomic replace",
    "pumaguard_hb.probes.stream": "new (issue 23): RTSP DESCRIBE/SETUP/PLAY, its author splits it",
}

#: part -> the parts it may import (besides itself and the package's __init__, which holds
#: only __version__). "top" is pumaguard_hb's own modules: monitor, schedule, status, ...
MAY_IMPORT = {
    "model": set(),
    "leaf": {"model"},  # logs, paths, notify: used by everybody above the model
    "stores": {"model", "leaf"},
    "probes": {"model", "leaf"},
    "outputs": {"model", "leaf", "stores", "probes"},
    "devices": {"model", "leaf", "stores", "probes"},  # smart plugs the daemon switches
    "inputs": {"model", "leaf", "stores", "probes", "control"},
    "control": {"model", "leaf", "stores", "probes", "outputs", "devices", "top"},
    "top": {"model", "leaf", "stores", "probes", "outputs", "devices", "inputs"},
    "entry": {
        "model",
        "leaf",
        "stores",
        "probes",
        "outputs",
        "devices",
        "inputs",
        "control",
        "top",
    },
    "cli": {"cli", "model", "leaf", "control", "inputs"},
}
LEAVES = {"logs", "paths", "notify"}
ENTRIES = {"daemon", "__main__", "hook"}


def modules() -> dict[str, Path]:
    """Every module of both packages by dotted name."""
    out = {}
    for name, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, at the top or inside a function, TYPE_CHECKING
    included (a type-only import is still an arrow)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import module` imports the module; `from module import name` the module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def part(name: str) -> str:
    """Which part of the layout a module belongs to."""
    parts = name.split(".")
    if parts[0] == "pumaguard_hb_cli":
        return "cli"
    if len(parts) == 1:
        return "init"
    if len(parts) > 2 or parts[1] in MAY_IMPORT:
        return parts[1]
    if parts[1] in LEAVES:
        return "leaf"
    return "entry" if parts[1] in ENTRIES else "top"


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_the_graph_is_read() -> None:
    """Guards the test itself: known arrows are found."""
    assert "pumaguard_hb.model.camera" in GRAPH["pumaguard_hb.model.station"]
    assert "pumaguard_hb.monitor" in GRAPH["pumaguard_hb.daemon"]
    assert "pumaguard_hb_cli.commands_status" in GRAPH["pumaguard_hb_cli.main"]
    assert {part(n) for n in GRAPH} >= {"model", "stores", "probes", "outputs", "inputs", "top"}
    assert part("pumaguard_hb.devices.shelly") == "devices"
    assert part("pumaguard_hb.devices") == "devices"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_each_part_imports_only_what_its_rule_allows(name: str) -> None:
    mine = part(name)
    if mine == "init":
        assert not GRAPH[name], "pumaguard_hb/__init__.py holds only __version__"
        return
    allowed = MAY_IMPORT[mine] | {mine, "init"}
    wrong = sorted(f"{dep} ({part(dep)})" for dep in GRAPH[name] if part(dep) not in allowed)
    assert not wrong, f"{name} ({mine}) may import only {sorted(allowed)}; it imports {wrong}"


def test_nothing_below_the_top_imports_the_monitor_or_the_daemon() -> None:
    hubs = {"pumaguard_hb.monitor", "pumaguard_hb.daemon"}
    below = ("model", "stores", "probes", "outputs", "devices", "inputs")
    wrong = [n for n in GRAPH if part(n) in below and GRAPH[n] & hubs]
    assert not wrong


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules that reach themselves by following imports, one list per circle (Tarjan's
    strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_circles() -> None:
    assert not circles(GRAPH)


def bench_graph() -> dict[str, set[str]]:
    """bench/'s scripts import each other by bare name (the folder is on sys.path):
    ``import bench_cli``, ``from common import ...``, at the top or inside a function."""
    scripts = {path.stem: path for path in sorted((ROOT / "bench").glob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in scripts.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module)
        graph[name] = {m for m in found if m in scripts and m != name}
    return graph


def test_bench_has_no_circles() -> None:
    """The benchmarks share code through bench/common.py, never by importing each other
    both ways (bench_cli <-> bench_daemon was one)."""
    graph = bench_graph()
    assert {"common", "bench_cli", "bench_daemon"} <= set(graph)
    assert "common" in graph["bench_cli"]  # the graph is read
    assert not circles(graph)


def test_circles_are_found() -> None:
    """Guards the test itself: a circle of two, and one of three, are seen."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_module_is_too_long(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    if name in TOO_LONG:
        assert lines > MAX_LINES, f"{name} is short now: take it off TOO_LONG"
        return
    assert lines <= MAX_LINES, f"{name}: {lines} lines; split it where its concerns part"
