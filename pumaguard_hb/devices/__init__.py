"""Devices the daemon drives: smart plugs."""
