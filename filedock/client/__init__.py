"""The client library: blocking sockets, typed results, verified downloads."""
