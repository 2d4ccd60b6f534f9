"""The shared level of the digest cache: behind memory and the disk, before a hashing;
and SharedDigests, whose every failure is a miss (a fake Redis client, a fake clock)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from filedock.digests import Key
from filedock.server import shared_digests
from filedock.server.repository import INLINE_HASH_BYTES, RACY_NS, HashCache, Repository
from filedock.server.shared_digests import EXPIRY, RETRY_AFTER, SharedDigests, redis_key

SMALL = b"a small file\n"  # hashed on the loop: never asked of any store
MEDIUM = b"M" * (INLINE_HASH_BYTES + 1)  # the smallest file the stores are asked for
LARGE = b"L" * (2 * 1024 * 1024)  # over SMALL_FILE_BYTES: the store is asked in its own job


def later() -> int:
    return time.time_ns() + 10 * RACY_NS


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "small.txt").write_bytes(SMALL)
    (root / "medium.bin").write_bytes(MEDIUM)
    (root / "large.bin").write_bytes(LARGE)
    repository = Repository(root, clock=later)
    yield repository
    repository.close()


class FakeShared:
    """The shared level in a dict, noting each ask."""

    def __init__(self, rows: dict[Key, str] | None = None) -> None:
        self.rows = dict(rows or {})
        self.asked: list[Key] = []
        self.put_rows: dict[Key, str] = {}

    async def get(self, key: Key) -> str | None:
        self.asked.append(key)
        return self.rows.get(key)

    def put(self, key: Key, digest: str) -> None:
        self.put_rows[key] = digest


class DictStore:
    def __init__(self) -> None:
        self.rows: dict[Key, str] = {}

    def get(self, key: Key) -> str | None:
        return self.rows.get(key)

    def put(self, key: Key, digest: str) -> None:
        self.rows[key] = digest

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def digest_of(repo: Repository, path: str, cache: HashCache) -> tuple[str, Key]:
    with repo.open(path) as opened:
        return asyncio.run(cache.sha256(opened)), opened.key.row()


@pytest.mark.parametrize("path", ["medium.bin", "large.bin"])
def test_a_digest_another_server_found_is_not_hashed_again(repo: Repository, path: str) -> None:
    with repo.open(path) as opened:
        key = opened.key.row()
    shared = FakeShared({key: "ab" * 32})
    cache = HashCache(clock=later, stats=repo.hashes.stats)
    cache.shared = shared
    try:
        assert digest_of(repo, path, cache)[0] == "ab" * 32
        assert (cache.hashings, cache.hits, cache.stats.bytes_hashed) == (0, 1, 0)
        # Then memory has it: the shared level is not asked again.
        assert digest_of(repo, path, cache)[0] == "ab" * 32
        assert shared.asked == [key]
    finally:
        cache.close()


@pytest.mark.parametrize("path", ["medium.bin", "large.bin"])
def test_a_miss_everywhere_is_hashed_once_and_shared(repo: Repository, path: str) -> None:
    shared = FakeShared()
    cache = HashCache(clock=later)
    cache.shared = shared
    try:
        digest, key = digest_of(repo, path, cache)
        assert digest == hashlib.sha256((Path(repo.root) / path).read_bytes()).hexdigest()
        assert cache.hashings == 1
        assert shared.asked == [key]
        assert shared.put_rows == {key: digest}
    finally:
        cache.close()


@pytest.mark.parametrize("path", ["medium.bin", "large.bin"])
def test_the_disk_is_asked_before_the_shared_level_and_what_it_has_is_shared(
    repo: Repository, path: str
) -> None:
    store = DictStore()
    with repo.open(path) as opened:
        key = opened.key.row()
    store.rows[key] = "cd" * 32
    shared = FakeShared()
    cache = HashCache(clock=later, store=store)
    cache.shared = shared
    try:
        assert digest_of(repo, path, cache)[0] == "cd" * 32
        assert shared.asked == []  # a local hit: no Redis
        assert shared.put_rows == {key: "cd" * 32}  # the other servers may not have it
        assert cache.hashings == 0
    finally:
        cache.close()


def test_a_file_hashed_on_the_loop_asks_no_shared_level(repo: Repository) -> None:
    # Hashing a few KiB costs less than a round trip to Redis.
    shared = FakeShared({})
    cache = HashCache(clock=later)
    cache.shared = shared
    try:
        digest, _ = digest_of(repo, "small.txt", cache)
        assert digest == hashlib.sha256(SMALL).hexdigest()
        assert (shared.asked, shared.put_rows, cache.hashings) == ([], {}, 1)
    finally:
        cache.close()


def test_a_racy_digest_is_not_shared(repo: Repository) -> None:
    shared = FakeShared()
    (Path(repo.root) / "now.txt").write_bytes(b"just written\n")
    cache = HashCache()  # the real clock: the file changed within the racy window
    cache.shared = shared
    try:
        digest_of(repo, "now.txt", cache)
        digest_of(repo, "now.txt", cache)
        assert cache.hashings == 2
        assert shared.put_rows == {}
    finally:
        cache.close()


def test_the_key_is_the_local_caches(repo: Repository) -> None:
    with repo.open("small.txt") as opened:
        st = os.stat(os.path.join(repo.root, "small.txt"))
        key = opened.key.row()
    assert redis_key(key) == (
        f"filedock:digest:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    )


# -- SharedDigests: every failure is a miss -----------------------------------------------


class FakeRedis:
    """The part of redis.asyncio.Redis used, in a dict; ``failing`` makes it raise."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.expiry: dict[str, int] = {}
        self.failing: Exception | None = None
        self.calls = 0
        self.closed = False

    async def get(self, name: str) -> str | None:
        self.calls += 1
        if self.failing is not None:
            raise self.failing
        return self.data.get(name)

    async def set(self, name: str, value: str, ex: int) -> Any:
        self.calls += 1
        if self.failing is not None:
            raise self.failing
        self.data[name] = value
        self.expiry[name] = ex
        return True

    async def aclose(self, close_connection_pool: bool = False) -> None:
        self.closed = close_connection_pool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY: Key = (1, 2, 3, 4, 5)
DIGEST = "0f" * 32


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_put_then_get_with_the_expiry() -> None:
    client = FakeRedis()
    shared = SharedDigests(client)

    async def scenario() -> str | None:
        shared.put(KEY, DIGEST)
        await shared.aclose()  # waits for the SET in flight
        return await shared.get(KEY)

    assert run(scenario()) == DIGEST
    assert client.data == {"filedock:digest:1:2:3:4:5": DIGEST}
    assert client.expiry == {"filedock:digest:1:2:3:4:5": EXPIRY}
    assert client.closed


@pytest.mark.parametrize("value", ["not a digest", "AB" * 32, "ab" * 31, b"\xff" * 64])
def test_a_value_that_is_no_digest_is_a_miss(value: Any) -> None:
    client = FakeRedis()
    client.data[redis_key(KEY)] = value
    assert run(SharedDigests(client).get(KEY)) is None


def test_an_outage_is_a_miss_logged_once_and_asked_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    client, clock = FakeRedis(), Clock()
    shared = SharedDigests(client, clock=clock)
    client.data[redis_key(KEY)] = DIGEST
    client.failing = ConnectionError("Connection refused")

    async def scenario() -> list[str | None]:
        seen = [await shared.get(KEY)]
        calls = client.calls
        seen += [await shared.get(KEY) for _ in range(5)]  # within RETRY_AFTER: not asked
        shared.put(KEY, DIGEST)  # dropped, not queued
        assert client.calls == calls
        clock.now += RETRY_AFTER
        seen.append(await shared.get(KEY))  # asked again: still down
        assert client.calls == calls + 1
        client.failing = None
        clock.now += RETRY_AFTER
        seen.append(await shared.get(KEY))  # back
        return seen

    assert run(scenario()) == [None] * 7 + [DIGEST]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "The shared digest cache (Redis) is unreachable: Connection refused; "
        "files are hashed locally until it answers again"
    ]
    assert "answers again after 10 s" in caplog.text
    assert shared.reachable


def test_a_slow_answer_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_digests, "TIMEOUT", 0.01)

    class Stalled(FakeRedis):
        async def get(self, name: str) -> str | None:
            await asyncio.Event().wait()  # never answers
            return None

    shared = SharedDigests(Stalled())
    assert run(shared.get(KEY)) is None
    assert not shared.reachable


def test_without_redis_py_there_is_no_shared_cache(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(url: str) -> Any:
        raise ImportError("No module named 'redis'")

    monkeypatch.setattr(shared_digests, "connect", missing)
    assert SharedDigests.from_url("redis://127.0.0.1:1/0") is None
    assert "pip install 'filedock[redis]'" in caplog.text
