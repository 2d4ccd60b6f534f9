"""--registry, --node, --lease: their rules, their environment twins, the one line
without redis-py, and the log lines that name the node only with --registry."""

from __future__ import annotations

import logging
import socket

import pytest

from filedock.cli import server as cli_server
from filedock.server import client_log
from filedock.server.config import ConfigError, ServerConfig
from filedock.server.registry import ClientEntry


def test_registry_without_redis_py_says_what_to_install_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = cli_server.importlib.util.find_spec
    monkeypatch.setattr(
        cli_server.importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "redis" else real(name, *rest),
    )
    handlers = list(logging.getLogger().handlers)
    assert cli_server.server_main(["--registry", "redis://127.0.0.1:1/0"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        "filedock-server: --registry needs the Redis client: pip install 'filedock[redis]'\n",
    )
    assert logging.getLogger().handlers == handlers  # nothing set up, nothing started


def test_the_options_have_their_environment_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEDOCK_SERVER_REGISTRY", "redis://10.0.0.9:6380/2")
    monkeypatch.setenv("FILEDOCK_SERVER_NODE", "b")
    monkeypatch.setenv("FILEDOCK_SERVER_LEASE", "4.5")
    args = cli_server.server_parser().parse_args([])
    assert (args.registry, args.node, args.lease) == ("redis://10.0.0.9:6380/2", "b", 4.5)
    defaults = cli_server.server_parser().parse_args(["--node", "c"])
    assert defaults.node == "c"


def test_lease_and_node_rules() -> None:
    assert ServerConfig().registry is None  # alone unless asked
    assert ServerConfig().lease == 15.0
    assert ServerConfig().node_name() == socket.gethostname()
    assert ServerConfig(node="a").node_name() == "a"
    for bad in ({"lease": 0.1}, {"lease": float("inf")}, {"node": "two words"}, {"node": "a\tb"}):
        with pytest.raises(ConfigError):
            ServerConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("node", "connected", "finished"),
    [
        (None, "Connected: Client01 from 10.0.0.1:4000", "Finished: Client01 (exit, 2.5 s)"),
        (
            "a",
            "Connected: Client01 from 10.0.0.1:4000 on node a",
            "Finished: Client01 (exit, 2.5 s) on node a",
        ),
    ],
)
def test_the_client_lines_name_the_node_only_in_a_cluster(
    caplog: pytest.LogCaptureFixture, node: str | None, connected: str, finished: str
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    entry = ClientEntry(1, "Client01", "10.0.0.1:4000", 100.0, node=node)
    client_log.connected(entry)
    entry.finished = 102.5
    client_log.finished(entry, "exit")
    assert [record.getMessage() for record in caplog.records] == [connected, finished]
    assert [getattr(record, "node", None) for record in caplog.records] == [node, node]
