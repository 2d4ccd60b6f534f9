"""The leak checker every test runs under (tests/support/resources.py) sees each kind of leak."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

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


LEAKY_TESTS = """
import socket
import threading

from tests.conftest import no_leaks  # noqa: F401  (the autouse fixture under test)

held = []
release = threading.Event()


def test_leaves_a_socket_open():
    held.append(socket.socket())


def test_leaves_a_thread_running():
    threading.Thread(target=release.wait, name="still-waiting", daemon=True).start()


def test_closes_what_it_opened():
    with socket.socket():
        pass


def teardown_module():  # after each test's check: what they left is closed here
    for sock in held:
        sock.close()
    release.set()
"""


def test_the_autouse_fixture_fails_a_test_that_leaks(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.support.resources.GRACE", 0.05)
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_socket_open*",
            "the test left behind:",
            "  file descriptor * -> socket:*",
            "*ERROR at teardown of test_leaves_a_thread_running*",
            "the test left behind:",
            "  thread 'still-waiting' (Thread)",
        ]
    )
