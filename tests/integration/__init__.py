"""Integration tests: the library client and the server together, in process, on port 0."""
