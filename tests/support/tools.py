"""The real programs some tests start (haproxy, redis-server): found, or the test skipped.

A missing program skips the test with the reason and how to install it,
unless the environment variable CI is set: there it is a failure, as CI
installs them (a silent skip would hide that nothing was tested).
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from tests.support import HOST

# Where Debian puts daemons: not on every user's PATH.
_SBIN = ("/usr/sbin", "/usr/local/sbin")


def require_program(name: str, package: str) -> str:
    """The path of the program ``name``; skips the test without it (fails it under CI)."""
    path = shutil.which(name) or next(
        (
            candidate
            for candidate in (os.path.join(folder, name) for folder in _SBIN)
            if os.access(candidate, os.X_OK)
        ),
        None,
    )
    if path is None:
        reason = f"{name} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must have it", pytrace=False)
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
