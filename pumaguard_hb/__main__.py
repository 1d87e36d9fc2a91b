"""``python -m pumaguard_hb``: the daemon."""

import sys

from pumaguard_hb.daemon import main

sys.exit(main())
