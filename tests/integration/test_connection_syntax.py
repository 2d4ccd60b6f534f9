"""The server's address as people write it, end to end: ``--host HOST:PORT``,
``[::1]:PORT``, ``filedock://token@host:port`` and ``Client.from_url``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from filedock.cli.client import client_main
from filedock.client.client import Client
from filedock.client.connection import client_context
from filedock.errors import Unauthorized
from filedock.server.config import ServerConfig
from tests.support import HOST, ServerThread, ipv6_loopback
from tests.support.credentials import tls_options

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")


def test_host_with_its_port_reaches_the_server(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client_main(["--host", f"{HOST}:{server.port}", "who"]) == 0
    assert capsys.readouterr().out == "[SERVER] WHO Client01\n"
    # The same port given again is no conflict.
    assert client_main(["--host", f"{HOST}:{server.port}", "--port", str(server.port), "who"]) == 0


@needs_ipv6
def test_an_ipv6_host_with_its_port_in_brackets(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = replace(ServerConfig(), host="::1", port=0, repo=str(repo), loop="asyncio")
    v6 = ServerThread(config).start()
    try:
        assert client_main(["--host", f"[::1]:{v6.port}", "ping"]) == 0
    finally:
        v6.stop()
    assert capsys.readouterr().out == "[SERVER] PONG\n"


def test_the_token_in_a_url_is_the_greetings(
    token_server: ServerThread,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FILEDOCK_TOKEN", raising=False)
    url = f"filedock://beta-456@{HOST}:{token_server.port}"
    assert client_main(["--host", url, "ping"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "[SERVER] PONG\n"
    assert "WARNING: a token in --host can be seen by other users" in captured.err
    # From the environment it is private: no warning.
    monkeypatch.setenv("FILEDOCK_HOST", url)
    assert client_main(["ping"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    # A wrong one is refused as a wrong --token-file is (exit 7).
    assert client_main(["--host", f"filedock://nope@{HOST}:{token_server.port}", "ping"]) == 7


def test_from_url_greets_with_the_urls_token(token_server: ServerThread) -> None:
    with Client.from_url(f"filedock://alpha-123@{HOST}:{token_server.port}", timeout=5) as client:
        assert (client.host, client.port) == (HOST, token_server.port)
        assert client.ping() < 5
    with pytest.raises(Unauthorized):
        Client.from_url(f"filedock://{HOST}:{token_server.port}", timeout=5)


def test_from_url_refuses_a_token_given_twice_before_connecting(server: ServerThread) -> None:
    with pytest.raises(ValueError, match="give it once"):
        Client.from_url(f"filedock://a@{HOST}:{server.port}", token="b")
    assert server.statistics().connections_accepted == 0


def test_filedocks_is_tls(
    ca: trustme.CA,
    ca_file: str,
    tmp_path: Path,
    make_server: Callable[..., ServerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tls = make_server(**tls_options(ca, tmp_path))
    url = f"filedocks://{HOST}:{tls.port}"
    assert client_main(["--host", url, "--cafile", ca_file, "ping"]) == 0
    assert capsys.readouterr().out == "[SERVER] PONG\n"
    with Client.from_url(url, tls=client_context(ca_file), timeout=5) as client:
        assert client.ping() < 5
    # filedocks:// alone is --tls alone: a certificate the system's CAs never signed
    # is pinned on first use, and only that one is taken after.
    assert client_main(["--host", url, "ping"]) == 0
    assert "its certificate is signed by no CA this machine trusts, so it is pinned" in (
        capsys.readouterr().err
    )
    assert client_main(["--host", url, "ping"]) == 0
    assert "pinned" not in capsys.readouterr().err
