"""The server's handler of event-loop errors: asyncio's late accept retries are quiet."""

from __future__ import annotations

import logging

import pytest

from tests.support import ServerThread, wait_until


class _Listening:
    """Its callback has the name of asyncio's accept retry (``_start_serving``)."""

    def __init__(self) -> None:
        self.ran = 0

    def _start_serving(self) -> None:
        self.ran += 1
        raise ValueError("Invalid file descriptor: -1")  # as on a listener closed since


def _loop_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncio"]


def test_an_accept_retry_after_the_listener_closed_is_not_logged(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    assert server.server is not None
    retry = _Listening()
    server.sync(lambda: server.loop.call_soon(retry._start_serving))
    wait_until(lambda: _loop_errors(caplog) != [])  # while serving, it is a real error
    assert "Exception in callback _Listening._start_serving()" in _loop_errors(caplog)[0]
    caplog.clear()
    server.call(server.server.aclose())
    server.sync(lambda: server.loop.call_soon(retry._start_serving))
    wait_until(lambda: server.sync(lambda: retry.ran) == 2)
    server.sync(lambda: None)  # the exception handler ran in the same loop turn
    assert _loop_errors(caplog) == []

    def other() -> None:
        raise ValueError("not a retry")

    server.sync(lambda: server.loop.call_soon(other))
    wait_until(lambda: _loop_errors(caplog) != [])  # any other error is still logged
