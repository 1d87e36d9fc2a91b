"""The control socket: protocol (pure encode/decode), server, command table, client."""
