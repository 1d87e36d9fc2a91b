"""``python3 -m pumaguard_hb.hook``: the path dnsmasq's dhcp-script runs
(systemd/dnsmasq-dhcp-script); the hook itself is :mod:`pumaguard_hb.inputs.hook`."""

from __future__ import annotations

import sys

from pumaguard_hb.inputs.hook import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
