"""Where a sweep's CPU goes: parsing and writing the settings file, per interpreter.

Run by bench/bench_daemon.py under each interpreter (``python bench/yaml_cost.py``);
prints JSON. Every sweep that changes something makes the daemon re-read the settings
file under the lock and write it again (pumaguard_hb/stores/settings_file.py: ``yaml.safe_load`` and
``yaml.safe_dump``, PyYAML's pure-Python loader and dumper). This times exactly those
two calls on the benchmark's settings files (the web UI's file with 50 and 1000
cameras), and the same with PyYAML's libyaml classes (``CSafeLoader``/``CSafeDumper``),
and says whether libyaml's output is byte-for-byte the same.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from common import write_settings

REPS = 3


def cpu_ms(fn: Callable[[], object]) -> float:
    """Best of REPS, CPU time of this thread, in ms."""
    best = float("inf")
    for _ in range(REPS):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best * 1000


def main() -> int:
    out: dict[str, Any] = {"libyaml": bool(getattr(yaml, "__with_libyaml__", False))}
    kw: dict[str, Any] = {"sort_keys": False, "default_flow_style": False, "allow_unicode": False}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (50, 1000):
            path = Path(tmp) / f"{n}.yaml"
            write_settings(path, [f"10.203.{1 + i // 254}.{1 + i % 254}" for i in range(n)],
                           "tcp", 60)  # fmt: skip
            text = path.read_text()
            doc = yaml.safe_load(text)
            row: dict[str, Any] = {
                "size": len(text),
                "load": cpu_ms(lambda: yaml.safe_load(text)),  # noqa: B023
                "dump": cpu_ms(lambda: yaml.safe_dump(doc, **kw)),  # noqa: B023
            }
            if out["libyaml"]:
                row["c_load"] = cpu_ms(lambda: yaml.load(text, Loader=yaml.CSafeLoader))  # noqa: B023
                row["c_dump"] = cpu_ms(
                    lambda: yaml.dump(doc, Dumper=yaml.CSafeDumper, **kw)  # noqa: B023
                )
                row["identical"] = (
                    yaml.safe_dump(doc, **kw) == yaml.dump(doc, Dumper=yaml.CSafeDumper, **kw)
                    and yaml.load(text, Loader=yaml.CSafeLoader) == doc
                )
            out[str(n)] = row
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
