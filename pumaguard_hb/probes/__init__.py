"""The probes (one module per way of checking: tcp, http/https/rtsp, icmp) and the sweep
that runs many at once."""
