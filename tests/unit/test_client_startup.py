"""A one-shot command starts without the modules only transfers, the prompt or TLS use."""

from __future__ import annotations

import subprocess
import sys

# Loaded only by what transfers (hashing, ctypes, the ledgers), the prompt, TLS, or the server.
TRANSFER_ONLY = (
    "filedock.client.download",
    "filedock.client.plan",
    "filedock.client.trees",
    "filedock.client.resume",
    "filedock.client.ledger",
    "filedock.client.sha256state",
    "filedock.cli.transfers",
    "filedock.cli.uploads",
    "filedock.cli.shell",
    "filedock.cli.pager",
    "filedock.server.auth",
    "asyncio",
    "ctypes",
    "ssl",
)


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_the_client_command_line_imports_no_transfer_module() -> None:
    loaded = loaded_after("import filedock.cli.client")
    assert loaded.isdisjoint(TRANSFER_ONLY), sorted(loaded.intersection(TRANSFER_ONLY))


def test_a_tls_context_still_loads_ssl_when_asked_for() -> None:
    loaded = loaded_after(
        "from filedock.client.connection import tls_context\nassert tls_context(True) is not None"
    )
    assert "ssl" in loaded
