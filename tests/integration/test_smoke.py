from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from filedock.client.client import Client
from tests.conftest import SAMPLE


def test_walkthrough_commands(connect: Callable[..., Client], downloads: Path) -> None:
    client = connect()
    assert client.name == "Client01"
    assert client.ping() >= 0
    assert client.who() == ["Client01"]
    assert client.say("hello there") == "hello there"
    assert [info.path for info in client.list()] == ["sample.txt"]
    saved = client.get("sample.txt", downloads)
    assert saved.read_bytes() == SAMPLE
    [record] = client.status()
    assert record.name == "Client01"
    assert record.finished is None
