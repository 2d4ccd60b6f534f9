"""Unit tests: one module or pure half at a time, with no server and no network."""
