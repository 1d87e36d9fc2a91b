"""pumaguard-hb: the command-line client of pumaguard-heartbeat (talks to it over its socket)."""
