"""pytest fixtures shared by every test; the code lives in tests/harness.py."""

from harness import daemon_factory, listeners, no_daemon_left_behind

__all__ = ["daemon_factory", "listeners", "no_daemon_left_behind"]
