"""The model: cameras (spec and observed status), the station and its pure transitions,
the settings schema (keys, defaults, validation), events, errors. Pure: no I/O, and it
imports nothing else of the project (docs/architecture.md)."""
