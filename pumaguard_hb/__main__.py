"""``python -m pumaguard_hb``: the daemon."""

import sys

from .daemon import main

sys.exit(main())
