"""End-to-end tests: the programs as a user runs them (subprocesses, a pty, the benchmark)."""
