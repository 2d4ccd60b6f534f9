"""A send's one log line: its wording, its fields, and the end it gives its session."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from typing import Any, cast

import pytest

from filedock.server.logs import WarningLimiter
from filedock.server.transfer import SendStalled, TransferError
from filedock.server.transfer_log import TransferLog

SHA = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
LOGGER = "filedock.server"


def session(name: str, source: str, limiter: WarningLimiter | None = None) -> Any:
    if limiter is None:  # (not `or`: an empty limiter has no length, so is false)
        limiter = WarningLimiter(logging.getLogger(LOGGER))
    context = SimpleNamespace(limiter=limiter)
    fake = SimpleNamespace(name=name, address="127.0.0.1:1", source=source, context=context)
    fake.end_reason = None
    return cast(Any, fake)


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


def test_each_end_of_a_send_has_its_words_at_the_end_of_one_line(
    log: pytest.LogCaptureFixture,
) -> None:
    s = session("Client01", "a")
    TransferLog(s, "sample.txt", 6).completed(SHA)
    TransferLog(s, "sample.txt", 6).completed(SHA, offset=2)
    TransferLog(s, "big.bin", 6).changed()
    cut = TransferError("connection broken: Broken pipe")
    cut.sent = 3
    TransferLog(s, "big.bin", 1000).cut_short(cut, offset=10)
    seconds, rate = r"\d+\.\d{3}s", r"\d+(\.\d)? [KMGT]?i?B/s"
    digest = "sha256=5891b5b522d5…"
    expected = [
        rf"Sent file 'sample\.txt' size=6 {digest} to Client01 {seconds}: 6 bytes at {rate}, "
        "completed",
        rf"Sent file 'sample\.txt' size=6 {digest} to Client01 {seconds}: 4 bytes at {rate}, "
        "resumed from 2",
        rf"Sent file 'big\.bin' size=6 to Client01 {seconds}: 6 bytes at {rate}, "
        "changed during the send",
        rf"Sent file 'big\.bin' size=1000 to Client01 {seconds}: 3 of 990 bytes at {rate}, "
        "cut short: connection broken: Broken pipe",
    ]
    records = log.records
    assert len(records) == len(expected)
    for record, pattern in zip(records, expected, strict=True):
        assert record.levelno == logging.INFO
        assert re.fullmatch(pattern, record.getMessage()), record.getMessage()
    fields = [(r.result, r.bytes, getattr(r, "offset", None), r.reason) for r in records]  # type: ignore[attr-defined]
    assert fields == [
        ("completed", 6, None, None),
        ("resumed", 4, 2, None),
        ("changed", 6, None, None),
        ("cut-short", 3, 10, "connection broken: Broken pipe"),
    ]
    assert s.end_reason == "reset"  # the broken connection is why the session ends
    for record in records[:3]:  # copies of one record, which names where the line is made
        assert record.name == LOGGER
        assert record.funcName == "log_transfer"
        assert record.pathname.endswith("transfer_log.py")


def test_a_stalled_send_ends_its_session_for_the_send_timeout(
    log: pytest.LogCaptureFixture,
) -> None:
    s = session("Client01", "a")
    TransferLog(s, "big.bin", 1000).cut_short(SendStalled("no progress for 60 s"))
    assert s.end_reason == "send-timeout"
    earlier = session("Client02", "a")
    earlier.end_reason = "reset"  # the loss of the connection, seen first, stays the reason
    TransferLog(earlier, "big.bin", 1000).cut_short(SendStalled("no progress for 60 s"))
    assert earlier.end_reason == "reset"


def test_sends_cut_short_from_one_source_cannot_hide_another_sources(
    log: pytest.LogCaptureFixture,
) -> None:
    limiter = WarningLimiter(logging.getLogger(LOGGER), burst=3)
    for i in range(10):
        TransferLog(session(f"Flood{i}", "10.0.0.1", limiter), "big.bin", 100).cut_short(
            TransferError("connection closed")
        )
    TransferLog(session("Client01", "10.0.0.2", limiter), "big.bin", 100).cut_short(
        TransferError("connection closed")
    )
    lines = [r.getMessage() for r in log.records]
    assert len(lines) == 4  # the flood's burst, then the other source's line
    assert lines[-1].startswith("Sent file 'big.bin' size=")
    assert " to Client01 " in lines[-1]
