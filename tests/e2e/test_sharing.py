"""Sharing a folder: ``filedock-server DIR``, and the addresses to give a colleague."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from filedock.cli.server import _folder_or_repo, server_main, server_parser
from filedock.server.reachable import reachable_addresses
from tests.support.process import ServerProcess


def _repo_of(argv: list[str]) -> str:
    parser = server_parser()
    args = parser.parse_args(argv)
    _folder_or_repo(parser, args)
    assert "folder" not in vars(args)  # not a ServerConfig field
    return str(args.repo)


def test_the_folder_may_be_named_without_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEDOCK_SERVER_REPO", raising=False)
    monkeypatch.delenv("FILEDOCK_REPO", raising=False)
    assert _repo_of(["shared"]) == "shared"
    assert _repo_of(["--port", "0", "shared/"]) == "shared/"
    assert _repo_of(["shared", "--repo", "./shared"]) == "shared"  # the same folder
    assert _repo_of([]) == "server_repo"


def test_a_folder_and_a_different_repo_are_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        server_main(["one", "--repo", "two"])
    assert exited.value.code == 2
    assert "the folder one and --repo two differ: give one of them" in capsys.readouterr().err


def test_a_server_on_every_address_names_where_to_reach_it(repo: Path) -> None:
    # The folder given twice, the same: allowed.
    server = ServerProcess(repo, "--host", "0.0.0.0", str(repo))
    try:
        line = server.wait_for_log(r"INFO: Clients can connect to (.+)$").group(1)
        addresses = line.split(", ")
        assert all(
            re.fullmatch(rf"\d+\.\d+\.\d+\.\d+:{server.port}", address) for address in addresses
        ), line
        assert f"127.0.0.1:{server.port}" == addresses[-1]  # this machine's, last
    finally:
        assert server.stop() == 0, server.log


def test_a_server_on_loopback_names_no_more_addresses(repo: Path) -> None:
    server = ServerProcess(repo)
    try:
        assert server.matching("Clients can connect to") == []
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "192.0.2.7", "files.example", "::1"])
def test_only_an_unspecified_address_lists_others(host: str) -> None:
    assert reachable_addresses(host, 50000) == []


def test_dual_stack_lists_both_families_and_no_link_local() -> None:
    addresses = reachable_addresses("::", 50000)
    assert "127.0.0.1:50000" in addresses
    assert not any(address.startswith("[fe80:") for address in addresses)
