"""Unit tests: one module or pure half at a time; no network, no server, no subprocess."""
