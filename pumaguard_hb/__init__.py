"""pumaguard-heartbeat: tells PumaGuard field stations which IP cameras are reachable."""

__version__ = "0.1.0"
