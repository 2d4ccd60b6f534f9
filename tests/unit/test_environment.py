"""One scheme of environment variables: FILEDOCK_<OPTION> for the client,
FILEDOCK_SERVER_<OPTION> for the server (its older FILEDOCK_<OPTION> still read)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from filedock.cli.client import client_parser, read_options
from filedock.cli.server import server_main, server_parser, shared_env_names_used


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "MAX_CLIENTS", "DOWNLOADS", "TIMEOUT", "CONNECT_TIMEOUT"):
        monkeypatch.delenv(f"FILEDOCK_{name}", raising=False)
        monkeypatch.delenv(f"FILEDOCK_SERVER_{name}", raising=False)


def test_the_client_reads_downloads_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEDOCK_DOWNLOADS", "/tmp/fetched")
    monkeypatch.setenv("FILEDOCK_TIMEOUT", "7.5")
    monkeypatch.setenv("FILEDOCK_CONNECT_TIMEOUT", "2")
    options = read_options(["ping"])
    assert (options.downloads, options.timeout, options.connect_timeout) == (
        "/tmp/fetched",
        7.5,
        2.0,
    )
    options = read_options(["--downloads", "here", "--timeout", "3", "ping"])
    assert (options.downloads, options.timeout) == ("here", 3.0)  # the command line wins


@pytest.mark.parametrize("value", ["-1", "0", "nan", "soon"])
def test_a_bad_timeout_in_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("FILEDOCK_TIMEOUT", value)
    with pytest.raises(SystemExit) as exited:
        read_options(["ping"])
    assert exited.value.code == 2
    assert "FILEDOCK_TIMEOUT" in capsys.readouterr().err


def test_the_client_does_not_read_the_servers_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEDOCK_SERVER_PORT", "50009")
    monkeypatch.setenv("FILEDOCK_SERVER_HOST", "0.0.0.0")
    options = read_options(["ping"])
    assert (options.host, options.port) == ("127.0.0.1", 50000)


def test_the_server_reads_its_own_names_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEDOCK_PORT", "50001")  # a client's, in the same shell
    monkeypatch.setenv("FILEDOCK_SERVER_PORT", "50002")
    monkeypatch.setenv("FILEDOCK_SERVER_MAX_CLIENTS", "5")
    args = server_parser().parse_args([])
    assert (args.port, args.max_clients) == (50002, 5)
    assert shared_env_names_used() == []


def test_the_servers_older_names_still_work_and_are_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FILEDOCK_PORT", "50001")
    monkeypatch.setenv("FILEDOCK_MAX_CLIENTS", "7")
    args = server_parser().parse_args([])
    assert (args.port, args.max_clients) == (50001, 7)
    # Only the names the client reads too are warned about at start.
    assert shared_env_names_used() == ["FILEDOCK_PORT"]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """server_main sets the filedock logger's handlers (to this test's captured stderr): put
    them back, or later tests' log lines go to a closed stream."""
    root = logging.getLogger("filedock")
    handlers, level, propagate = root.handlers[:], root.level, root.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


@pytest.mark.usefixtures("root_logging")
def test_the_server_warns_at_start_of_a_shared_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEDOCK_HOST", "no-such-host.invalid")
    monkeypatch.setattr("filedock.cli.server._prepare_repo", _refuse)
    assert server_main(["--port", "0"]) == 1
    err = capsys.readouterr().err
    assert (
        "WARNING: FILEDOCK_HOST is read as the server's: an older name the client reads too; "
        "FILEDOCK_SERVER_HOST is the server's own"
    ) in err, err


def _refuse(repo: str) -> None:
    raise ValueError(f"--repo {repo}: not started in this test")


def test_help_names_each_programs_variables() -> None:
    server_help = server_parser().format_help()
    assert "[env FILEDOCK_SERVER_PORT, or FILEDOCK_PORT]" in " ".join(server_help.split())
    assert "FILEDOCK_PORT, …) are still read" in " ".join(server_help.split())
    client_help = " ".join(client_parser().format_help().split())
    for name in ("FILEDOCK_HOST", "FILEDOCK_PORT", "FILEDOCK_DOWNLOADS", "FILEDOCK_TIMEOUT"):
        assert f"[env {name}]" in client_help
    # FILEDOCK_TOKEN holds a token, not the name of a file.
    assert "[env FILEDOCK_TOKEN]" not in client_help
    assert "put the token itself in FILEDOCK_TOKEN" in client_help
