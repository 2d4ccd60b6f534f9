"""``put`` over one :class:`Client`, for the prompt and the one-shot command alike.

Each LOCAL file goes to ``--to``/its name; a folder (with ``-r``) to
``--to``/its name/… by :meth:`Client.upload_tree`, which skips what the
server has already. What happened to each file is one line of
:mod:`.screen` (``Stored …``, ``Skipped … (the server has it)``), or, with
``--json``, one JSON object a line (:func:`upload_json`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..client.client import Client
from ..client.results import UploadOutcome, UploadResult
from ..client.upload import UnreadableFile, remote_join
from ..errors import (
    Changed,
    ConnectionLost,
    FiledockError,
    ProtocolError,
    RequestError,
    ServerClosing,
)
from .exitcodes import ExitCode, upload_exit_code, worst
from .screen import VERBOSE, Screen, TransferBar, printable
from .transfer_options import PutRequest
from .transfers import count_outcomes, print_json_line, show_failure


def upload_json(local: Path, path: str, outcome: UploadResult | FiledockError) -> dict[str, Any]:
    """``{"local", "path", "size", "sha256", "result", "resumed_from"}``: ``result`` is
    stored, resumed or skipped, or ``"failed"`` with ``"error"`` saying why
    (``size`` and ``sha256`` are then null)."""
    if isinstance(outcome, FiledockError):
        return {
            "local": os.path.abspath(local),
            "path": path,
            "size": None,
            "sha256": None,
            "result": "failed",
            "resumed_from": 0,
            "error": str(outcome),
        }
    return {
        "local": os.path.abspath(local),
        "path": path,
        "size": outcome.size,
        "sha256": outcome.sha256,
        "result": str(outcome.outcome),
        "resumed_from": outcome.resumed_from,
    }


def run_put(client: Client, request: PutRequest, screen: Screen) -> ExitCode:
    """Send what ``request`` names; the exit status (the worst of its files)."""
    codes: list[ExitCode] = []
    outcomes: list[UploadResult | FiledockError] = []
    start = time.monotonic()
    for typed in request.paths:
        local = Path(typed)
        if local.is_dir() and not request.recursive:
            screen.client_error(f"{printable(typed)} is a folder: put -r sends it, and all in it")
            codes.append(ExitCode.ERROR)
            continue
        bar = screen.transfer_bar()
        try:
            done = _send(client, local, request, bar)
        finally:
            if bar is not None:
                bar.finish()
        for (source, path), outcome in done:
            codes.append(_show(screen, request, source, path, outcome))
            outcomes.append(outcome)
    if not request.json and (len(outcomes) > 1 or screen.verbosity >= VERBOSE):
        _put_summary(screen, outcomes, time.monotonic() - start)
    return worst(codes)


def _put_summary(
    screen: Screen, outcomes: list[UploadResult | FiledockError], seconds: float
) -> None:
    """The line after a ``put`` of several files: how many of each, the bytes sent, the rate."""
    done, failed, moved = count_outcomes(outcomes, (UploadOutcome.SKIPPED,))
    screen.transfer_summary(done, failed, moved, seconds)


_Sent = list[tuple[tuple[Path, str], UploadResult | FiledockError]]


def _send(client: Client, local: Path, request: PutRequest, bar: TransferBar | None) -> _Sent:
    """Send one LOCAL (a file, or a folder's files); ``((local, server path), outcome)`` each."""
    path = remote_join(request.to, local.resolve().name if local.is_dir() else local.name)
    try:
        if local.is_dir():
            summary = client.upload_tree(local, path, replace=request.replace, progress=bar)
            return list(zip(summary.files, summary.results, strict=True))
        return [((local, path), client.upload(local, path, replace=request.replace, progress=bar))]
    except (ServerClosing, ConnectionLost, ProtocolError):
        raise  # the session is over: the caller says so
    except FiledockError as exc:  # refused as a whole (a version 1 server, …)
        return [((local, path), exc)]


def _show(
    screen: Screen,
    request: PutRequest,
    local: Path,
    path: str,
    outcome: UploadResult | FiledockError,
) -> ExitCode:
    """Say what happened to one file; its exit status."""
    if request.json:
        print_json_line(screen, upload_json(local, path, outcome))
    if isinstance(outcome, UploadResult):
        if not request.json:
            screen.upload(outcome)
        return ExitCode.OK
    show_upload_failure(screen, outcome, local, path)
    return upload_exit_code(outcome)


def show_upload_failure(screen: Screen, error: FiledockError, local: Path, path: str) -> None:
    """The line that says why ``local`` was not stored as ``path`` (on stderr)."""
    if isinstance(error, Changed):
        screen.client_error(
            f"{printable(str(local))} changed while it was sent: nothing was stored (run put again)"
        )
    elif isinstance(error, UnreadableFile):
        screen.client_error(printable(str(error)))
    elif isinstance(error, RequestError) and not isinstance(error, ServerClosing):
        screen.request_error(error, path)
    else:
        show_failure(screen, error, path)
