"""Ways out: actions (webhooks, a command), alerts (mail, Apprise), Prometheus metrics
and the status page. They see the monitor only through small Protocols."""
