"""Fixtures for TLS and access tokens: a throw-away CA, a TLS server, a token server.

A pytest plugin (tests/conftest.py names it in ``pytest_plugins``), so the tests
of every layer that need them use the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from tests.support import ServerThread

TOKENS = "# access tokens\n\nalpha-123\n  beta-456  \n# old: gamma\n"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """One CA for the whole run: it only signs, so sharing it costs no test anything."""
    return trustme.CA()


def tls_options(ca: trustme.CA, folder: Path) -> dict[str, object]:
    """The server options of a TLS server whose certificate ``ca`` signed (files in ``folder``)."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file = folder / "cert.pem"
    key_file = folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return {"tls_cert": str(cert_file), "tls_key": str(key_file), "handshake_timeout": 1.0}


@pytest.fixture
def tls_server(
    ca: trustme.CA, tmp_path: Path, make_server: Callable[..., ServerThread]
) -> ServerThread:
    return make_server(**tls_options(ca, tmp_path))


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def token_server(tmp_path: Path, make_server: Callable[..., ServerThread]) -> ServerThread:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    return make_server(token_file=str(path))
