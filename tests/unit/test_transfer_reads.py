"""Reading a body's chunks under TLS: on the loop from the page cache, in a thread from the disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from filedock.server import transfer
from filedock.server.activity import Activity
from filedock.server.repository import FileKey, OpenedFile
from filedock.server.stats import Statistics

DATA = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "body.bin"
    path.write_bytes(DATA)
    descriptor = os.open(path, os.O_RDONLY)
    yield descriptor
    os.close(descriptor)


@pytest.fixture
def thread_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The reads sent to a thread, made there as before."""
    calls: list[tuple[Any, ...]] = []
    real = asyncio.to_thread

    async def counted(function: Callable[..., Any], *args: Any) -> Any:
        calls.append(args)
        return await real(function, *args)

    monkeypatch.setattr(transfer.asyncio, "to_thread", counted)
    return calls


def read(fd: int, count: int, offset: int) -> bytes:
    return bytes(asyncio.run(transfer.read_chunk(fd, count, offset)))


@pytest.mark.skipif(not transfer._NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_cached_bytes_are_read_on_the_loop(fd: int, thread_reads: list[tuple[Any, ...]]) -> None:
    try:  # a file system without RWF_NOWAIT support sends every read to the thread
        os.preadv(fd, [bytearray(1)], 0, transfer._NOWAIT)
    except OSError as exc:
        pytest.skip(f"RWF_NOWAIT refused here: {exc}")
    assert read(fd, 4096, 100) == DATA[100:4196]
    assert thread_reads == []


@pytest.mark.parametrize(
    "refusal",
    [
        BlockingIOError(11, "Resource temporarily unavailable"),  # not in the page cache
        OSError(95, "Operation not supported"),  # a file system without RWF_NOWAIT
    ],
)
def test_a_read_the_cache_cannot_answer_is_made_in_a_thread(
    fd: int,
    thread_reads: list[tuple[Any, ...]],
    monkeypatch: pytest.MonkeyPatch,
    refusal: OSError,
) -> None:
    def refused(*args: Any) -> int:
        raise refusal

    monkeypatch.setattr(transfer, "_NOWAIT", 8)
    monkeypatch.setattr(transfer.os, "preadv", refused)
    assert read(fd, 4096, 100) == DATA[100:4196]
    assert thread_reads == [(fd, 4096, 100)]


def test_only_the_cached_part_is_sent_when_the_rest_is_not(
    fd: int, thread_reads: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_cached(descriptor: int, buffers: list[bytearray], offset: int, flags: int) -> int:
        [buffer] = buffers
        half = len(buffer) // 2
        buffer[:half] = os.pread(descriptor, half, offset)
        return half

    monkeypatch.setattr(transfer, "_NOWAIT", 8)
    monkeypatch.setattr(transfer.os, "preadv", half_cached)
    assert read(fd, 4096, 0) == DATA[:2048]
    assert thread_reads == []


def test_the_end_of_the_file_is_an_empty_read(fd: int, thread_reads: list[tuple[Any, ...]]) -> None:
    assert read(fd, 4096, len(DATA)) == b""
    assert read(fd, 4096, len(DATA) - 10) == DATA[-10:]


def test_without_rwf_nowait_every_read_goes_to_a_thread(
    fd: int, thread_reads: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "_NOWAIT", 0)
    assert read(fd, 4096, 0) == DATA[:4096]
    assert thread_reads == [(fd, 4096, 0)]


class HoldingTransport(asyncio.WriteTransport):
    """A transport that keeps what it is given, unsent, until told to let go.

    Like asyncio's TLS transport with its socket full, it keeps the very
    object written, and counts it in its write buffer.
    """

    def __init__(self, holds: bool) -> None:
        super().__init__()
        self.holds = holds
        self.written: list[Any] = []
        self.copies: list[bytes] = []  # what each write held when it was made

    def write(self, data: Any) -> None:
        self.written.append(data)
        self.copies.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return sum(len(data) for data in self.written) if self.holds else 0

    def is_closing(self) -> bool:
        return False


def send_chunks(path: Path, transport: HoldingTransport) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        opened = OpenedFile(descriptor, path.name, FileKey.of(os.fstat(descriptor)))
        progress = Activity("get", path.name, opened.size)
        flow = transfer.WriteFlow()
        asyncio.run(transfer._send_chunks(transport, flow, opened, 5.0, progress, Statistics()))
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("holds", [True, False])
def test_a_buffer_the_transport_may_hold_is_never_read_into_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holds: bool
) -> None:
    monkeypatch.setattr(transfer, "TLS_READ_SIZE", 4096)
    data = os.urandom(5 * 4096 + 100)
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    transport = HoldingTransport(holds)
    send_chunks(path, transport)
    assert b"".join(transport.copies) == data
    if holds:  # every chunk is still what it was when written
        assert b"".join(bytes(chunk) for chunk in transport.written) == data
    elif transfer._NOWAIT:  # let go of at once: one buffer serves every chunk
        assert len({id(chunk.obj) for chunk in transport.written}) == 1
