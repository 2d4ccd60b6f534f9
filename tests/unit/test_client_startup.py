"""A one-shot command starts without the modules only transfers or the prompt use."""

from __future__ import annotations

import subprocess
import sys

# Loaded only by what transfers (hashing, ctypes, the ledgers), the prompt, or the server.
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
