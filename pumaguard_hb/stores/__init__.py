"""Where things live: the settings file (YAML, lock, atomic replace), the camera stores
(the file, the PumaGuard web UI and our client of it), the state-change history."""
