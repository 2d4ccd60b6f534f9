"""--http and --http-insecure: where the HTTP side listens, and when it may not start."""

from __future__ import annotations

import pytest

from filedock.cli.server import server_main
from filedock.server.config import ConfigError, ServerConfig, http_address


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("9100", ("127.0.0.1", 9100)),
        (":9100", ("127.0.0.1", 9100)),
        ("0", ("127.0.0.1", 0)),
        ("localhost:9100", ("localhost", 9100)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:9100", ("::1", 9100)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_the_listening_address_is_read(text: str, address: tuple[str, int]) -> None:
    assert http_address(text) == address


@pytest.mark.parametrize("text", ["", "x", "host:", "host:port", "::1:9100", "70000", "-1", "１２"])
def test_a_value_that_is_no_address_is_refused(text: str) -> None:
    assert http_address(text) is None
    with pytest.raises(ConfigError, match="must be HOST:PORT, :PORT or PORT"):
        ServerConfig(http=text)


def test_off_unless_asked_for() -> None:
    assert ServerConfig().http_listen() is None
    assert ServerConfig(http="9100").http_listen() == ("127.0.0.1", 9100)


def test_beyond_loopback_it_needs_a_token_file_or_the_insecure_switch() -> None:
    with pytest.raises(ConfigError) as refused:
        ServerConfig(http="0.0.0.0:9100")
    assert "--http-insecure" in refused.value.option_text()
    assert "--token-file" in refused.value.option_text()
    assert ServerConfig(http="0.0.0.0:9100", token_file="tokens").http_listen()
    assert ServerConfig(http="0.0.0.0:9100", http_insecure=True).http_listen()
    assert ServerConfig(http="[::1]:9100").http_listen() == ("::1", 9100)


def test_the_command_line_refuses_it_with_status_2_and_names_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        server_main(["--http", "0.0.0.0:9100"])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("filedock-server: error: --http 0.0.0.0:9100 is reachable beyond")
    assert "--http-insecure" in error
