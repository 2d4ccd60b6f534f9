"""The client's options: read once from the command line and the environment, then frozen."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from filedock.cli.client import ClientOptions, read_options
from filedock.cli.transfer_options import GetRequest


def test_the_command_line_becomes_one_frozen_object() -> None:
    options = read_options(
        ["--port", "50001", "--max-size", "2K", "--timeout", "5", "get", "a b", "c", "-o", "out"]
    )
    assert options == ClientOptions(
        port=50001,
        max_size=2048,
        timeout=5.0,
        downloads="out",
        command="get",
        arguments=("a b", "c"),
        transfer=GetRequest(paths=("a b", "c"), output="out"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.port = 1  # type: ignore[misc]


def test_no_command_is_the_prompt_and_zero_is_no_limit() -> None:
    options = read_options(["--max-time", "0", "--max-size", "0"])
    assert options.command is None
    assert options.max_time is None
    assert options.max_size is None
    assert options.tls is None


def test_json_belongs_to_its_command() -> None:
    assert read_options(["list", "--json"]).json is True
    assert read_options(["list"]).json is False
    assert read_options(["ping"]).json is False


def test_the_environment_fills_in_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FILEDOCK_HOST", "::1")
    monkeypatch.setenv("FILEDOCK_PORT", "50002")
    monkeypatch.setenv("FILEDOCK_TOKEN", "s3cret")
    options = read_options(["--port", "50003", "ping"])
    assert (options.host, options.port, options.token) == ("::1", 50003, "s3cret")


def test_connect_passes_every_option_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    connected = SimpleNamespace(certificate_pinned=False)  # a Client that pinned nothing

    def fake_client(host: str, port: int, **kwargs: Any) -> SimpleNamespace:
        seen.update(kwargs, host=host, port=port)
        return connected

    monkeypatch.setattr("filedock.cli.client.Client", fake_client)
    options = ClientOptions(host="h", port=2, timeout=3.0, connect_timeout=4.0, token="t")
    assert options.connect() is connected  # type: ignore[comparison-overlap]
    assert seen == {
        "host": "h",
        "port": 2,
        "timeout": 3.0,
        "connect_timeout": 4.0,
        "tls": None,
        "token": "t",
        "max_time": None,
        "max_size": None,
        "max_line": 4096,
        "known_servers": None,
        "accept_new_certificate": False,
    }


IMPORT_CHECK = """
import logging, os, resource, signal, sys
umasks = []
real_umask = os.umask
os.umask = lambda mask: umasks.append(mask) or real_umask(mask)
handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
limit = resource.getrlimit(resource.RLIMIT_NOFILE)
log_state = (list(logging.getLogger().handlers), logging._srcfile)
import filedock, filedock.cli, filedock.cli.client, filedock.cli.shell, filedock.cli.oneshot
client_loaded = sorted(m for m in sys.modules if m.startswith("filedock.server."))
import filedock.cli.server
assert umasks == [], umasks
assert handlers == {s: signal.getsignal(s) for s in handlers}, "signal handlers"
assert limit == resource.getrlimit(resource.RLIMIT_NOFILE), "rlimit"
assert log_state == (list(logging.getLogger().handlers), logging._srcfile), "logging"
print(client_loaded)
"""


def test_importing_the_command_lines_changes_no_process_state() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # The client's command line reads a token file as the server does, but imports
    # that module only when given one: starting, it loads nothing of the server.
    assert done.stdout.strip() == "[]"


def test_host_may_carry_its_port_and_a_url_its_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEDOCK_TOKEN", raising=False)
    monkeypatch.setenv("FILEDOCK_PORT", "50009")  # a port in --host wins over it
    options = read_options(["--host", "127.0.0.1:50001", "ping"])
    assert (options.host, options.port, options.token) == ("127.0.0.1", 50001, None)
    options = read_options(["--host", "[::1]:50001", "--port", "50001", "ping"])
    assert (options.host, options.port) == ("::1", 50001)
    options = read_options(["--host", "filedock://tok@h:7", "ping"])
    assert (options.host, options.port, options.token, options.tls) == ("h", 7, "tok", None)
    options = read_options(["--host", "filedocks://h", "ping"])
    assert (options.host, options.port) == ("h", 50009)
    assert options.tls is not None
    monkeypatch.setenv("FILEDOCK_HOST", "filedock://env-token@envhost:8")
    options = read_options(["ping"])
    assert (options.host, options.port, options.token) == ("envhost", 8, "env-token")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--host", "h:1", "--port", "2"], "--host names port 1 and --port 2: give the port once"),
        (["--host", "h:99999"], "--host: 'h:99999': '99999' is not a port (1-65535)"),
        (["--host", "http://h"], "the scheme must be filedock:// or filedocks://"),
        (["--host", "filedock://s3cret@h/x"], "names a server only"),
        (
            ["--host", "filedock://t@h", "--token-file", "/dev/null"],
            "a token in the address and --token-file too",
        ),
    ],
)
def test_a_bad_address_is_a_usage_error(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        read_options([*argv, "ping"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert says in err
    assert "s3cret" not in err


def test_a_bad_address_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEDOCK_HOST", "h:0")
    with pytest.raises(SystemExit):
        read_options(["ping"])
    assert "FILEDOCK_HOST: 'h:0': '0' is not a port" in capsys.readouterr().err


def test_wait_is_read_and_zero_is_one_try() -> None:
    assert read_options(["--wait", "30", "ping"]).wait == 30.0
    assert read_options(["--wait", "0", "ping"]).wait is None
    assert read_options(["ping"]).wait is None
    for bad in ("-1", "nan", "x"):
        with pytest.raises(SystemExit):
            read_options(["--wait", bad, "ping"])


def test_ctrl_c_while_the_prompt_connects_ends_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from filedock.cli.client import run_client

    def interrupted(self: ClientOptions) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ClientOptions, "connect", interrupted)
    assert run_client(ClientOptions(wait=30.0)) == 130
