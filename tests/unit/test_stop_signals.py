"""The server's stop signals, once it has shut down: ignored, never their default action."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from filedock.cli.server import _STOP_SIGNALS, _ignore_stop_signals


def test_no_moment_gives_a_stop_signal_its_default_action(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    set_to: list[tuple[int, Any]] = []
    real_signal: Callable[..., Any] = signal.signal

    def recording_signal(signum: int, handler: Any) -> Any:
        set_to.append((signum, handler))
        return real_signal(signum, handler)

    loop = asyncio.new_event_loop()
    try:
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, lambda: None)
        monkeypatch.setattr(signal, "signal", recording_signal)
        _ignore_stop_signals(loop)
        loop.close()  # closing the loop must not give them back either
        monkeypatch.undo()
        # A repeated SIGTERM in any of these moments would have killed the process.
        assert (signal.SIGTERM, signal.SIG_DFL) not in set_to
        assert all(handler is signal.SIG_IGN for _, handler in set_to), set_to
        for signum in _STOP_SIGNALS:
            assert signal.getsignal(signum) is signal.SIG_IGN
    finally:
        monkeypatch.undo()
        for signum, handler in saved.items():
            signal.signal(signum, handler)
