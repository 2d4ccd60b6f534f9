"""The leak checker every test runs under (tests/support/resources.py) sees each kind of leak."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from tests.support.resources import Resources, leaks_after


def test_an_open_socket_is_named() -> None:
    before = Resources.now()
    sock = socket.socket()
    try:
        leaks = leaks_after(before, grace=0.05)
        assert leaks == [f"file descriptor {sock.fileno()} -> socket:[{_inode(sock)}]"]
    finally:
        sock.close()
    assert leaks_after(before, grace=0.05) == []


def test_a_running_thread_is_named() -> None:
    before = Resources.now()
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="left-running")
    thread.start()
    try:
        assert leaks_after(before, grace=0.05) == ["thread 'left-running' (Thread)"]
    finally:
        release.set()
        thread.join(5)
    assert leaks_after(before) == []


def test_a_child_not_waited_for_is_named() -> None:
    before = Resources.now()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        leaks = leaks_after(before, grace=0.05)
        assert [leak for leak in leaks if leak.startswith(f"child process {child.pid} ")]
    finally:
        child.wait(10)
    assert leaks_after(before) == []


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino
