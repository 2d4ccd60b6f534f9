"""Two servers of one repository and one real Redis (--registry): a file is hashed once
across them; Redis down, downloads are still hashed and verified, and it is said once."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import filedock.server.repository
from filedock.client.client import Client, DownloadResult
from filedock.server.shared_digests import PREFIX
from tests.support import HOST, ServerThread, wait_until
from tests.support.redis_server import RedisServer

redis = pytest.importorskip("redis")

CONTENT = b"served by whichever node the balancer picks\n" * 5000


@pytest.fixture(autouse=True)
def trusted_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written by the test may be cached at once (no racy window)."""
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    with RedisServer(folder) as server:
        yield server


@pytest.fixture
def node(
    make_server: Callable[..., ServerThread], redis_server: RedisServer, tmp_path: Path
) -> Callable[[str], ServerThread]:
    """A server of the shared repository and Redis, with a digest store on disk of its own
    (on one shared file system they would share that too: here only Redis may tell)."""

    def make(name: str) -> ServerThread:
        return make_server(registry=redis_server.url, state_dir=str(tmp_path / f"state-{name}"))

    return make


def fetch(server: ServerThread, dest: Path, path: str = "data.bin") -> bytes:
    """Download ``path`` (the client checks it against the digest announced)."""
    with Client(HOST, server.port, timeout=10) as client:
        result = client.send_line(path, dest)
        assert isinstance(result, DownloadResult)
        return result.path.read_bytes()


def hashed(server: ServerThread) -> tuple[int, int]:
    """Files hashed and bytes hashed by ``server``."""
    assert server.server is not None
    stats = server.server.stats
    return server.sync(lambda: (stats.digest_cache_misses, stats.bytes_hashed))


def shared_keys(redis_server: RedisServer) -> list[str]:
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as client:
        return sorted(client.scan_iter(match=PREFIX + "*"))


def test_the_second_node_serves_the_digest_the_first_computed(
    repo: Path, node: Callable[[str], ServerThread], redis_server: RedisServer, tmp_path: Path
) -> None:
    (repo / "data.bin").write_bytes(CONTENT)
    a, b = node("a"), node("b")
    assert fetch(a, tmp_path / "from-a") == CONTENT
    assert hashed(a) == (1, len(CONTENT))
    wait_until(lambda: len(shared_keys(redis_server)) == 1)  # set in the background
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as client:
        (key,) = shared_keys(redis_server)
        assert client.get(key) == hashlib.sha256(CONTENT).hexdigest()
        assert 29 * 24 * 3600 < client.ttl(key) <= 30 * 24 * 3600
    assert fetch(b, tmp_path / "from-b") == CONTENT
    assert hashed(b) == (0, 0)  # not read to be hashed: Redis had it
    assert b.statistics().hash_cache_hits == 1


def test_a_changed_file_is_not_served_the_old_digest(
    repo: Path, node: Callable[[str], ServerThread], redis_server: RedisServer, tmp_path: Path
) -> None:
    path = repo / "data.bin"
    path.write_bytes(CONTENT)
    a, b = node("a"), node("b")
    fetch(a, tmp_path / "first")
    wait_until(lambda: len(shared_keys(redis_server)) == 1)
    path.write_bytes(CONTENT[::-1])  # same size, new contents: a new key
    assert fetch(b, tmp_path / "second") == CONTENT[::-1]  # verified against its own digest
    assert hashed(b) == (1, len(CONTENT))


def test_redis_down_downloads_are_hashed_locally_and_it_is_said_once(
    repo: Path,
    node: Callable[[str], ServerThread],
    redis_server: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    for index in range(3):
        (repo / f"file{index}.bin").write_bytes(CONTENT + bytes([index]))
    a = node("a")
    # Redis down, the registry refuses new connections: a client connected before downloads.
    with Client(HOST, a.port, timeout=10) as client:
        redis_server.stop()
        for index in range(3):
            result = client.send_line(f"file{index}.bin", tmp_path / f"down{index}")
            assert isinstance(result, DownloadResult)
            assert result.path.read_bytes() == CONTENT + bytes([index])
    assert hashed(a)[0] == 3
    unreachable = [
        r for r in caplog.records if "shared digest cache (Redis) is unreachable" in r.message
    ]
    assert len(unreachable) == 1
    assert unreachable[0].levelno == logging.WARNING
