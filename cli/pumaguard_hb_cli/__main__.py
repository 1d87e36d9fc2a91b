"""``python -m pumaguard_hb_cli``: the same as ``pumaguard-hb``."""

from .main import main

main()
