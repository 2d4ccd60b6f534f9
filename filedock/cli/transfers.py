"""``get`` and ``mirror`` over one :class:`Client`, for the prompt and the one-shot command alike.

``get`` turns what was typed into the server's paths first (a pattern
expanded over the listing, a folder with ``-r`` into the files under it),
then fetches them all in one pipelined call, so one progress line counts
every file. What happened to each file is said by :mod:`.screen`, or, with
``--json``, as one JSON object a line (:func:`result_json`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.client import Client
from ..client.results import Change, DownloadResult, Outcome, TreeSummary, UploadResult
from ..errors import (
    ConnectionLost,
    FiledockError,
    Forbidden,
    IntegrityError,
    ProtocolError,
    RequestError,
    SaveError,
    ServerClosing,
)
from ..protocol import FileInfo
from . import globs
from .exitcodes import ExitCode, exit_code_for, worst
from .screen import VERBOSE, Screen, TransferBar, printable
from .transfer_options import GetRequest, MirrorRequest


def result_json(path: str, outcome: DownloadResult | FiledockError) -> dict[str, Any]:
    """``{"path", "saved_to", "size", "sha256", "result"}``: ``result`` is what happened
    (fetched, resumed, skipped, replaced, kept), or ``"failed"`` with ``"error"``
    saying why (``saved_to``, ``size`` and ``sha256`` are then null)."""
    if isinstance(outcome, FiledockError):
        return {
            "path": path,
            "saved_to": None,
            "size": None,
            "sha256": None,
            "result": "failed",
            "error": str(outcome),
        }
    return {
        "path": path,
        "saved_to": os.path.abspath(outcome.path),
        "size": outcome.size,
        "sha256": outcome.sha256,
        "result": str(outcome.outcome),
    }


def change_json(change: Change, *, dry_run: bool) -> dict[str, Any]:
    """``{"action", "path", "local", "size", "dry_run"}``, and ``"error"`` for a failure."""
    document: dict[str, Any] = {
        "action": change.action,
        "path": change.path,
        "local": str(change.local),
        "size": change.size,
        "dry_run": dry_run,
    }
    if change.error is not None:
        document["error"] = str(change.error)
    return document


def summary_json(summary: TreeSummary, seconds: float, *, dry_run: bool) -> dict[str, Any]:
    """``{"summary": {...}}``: the counts, ``bytes``, ``seconds`` and ``dry_run``."""
    return {
        "summary": {
            "fetched": summary.fetched,
            "skipped": summary.skipped,
            "replaced": summary.replaced,
            "deleted": summary.deleted,
            "failed": summary.failed,
            "kept": summary.kept,
            "bytes": summary.bytes,
            "seconds": round(seconds, 3),
            "dry_run": dry_run,
        }
    }


def print_json_line(screen: Screen, document: object) -> None:
    screen.end_progress()
    screen.out.write(json.dumps(document) + "\n")
    screen.out.flush()


@dataclass
class Wanted:
    """The server paths a ``get`` line names, and what it named that is not there."""

    paths: list[str] = field(default_factory=list)
    codes: list[ExitCode] = field(default_factory=list)
    # The records of the listings read on the way: a file's size and mtime, known.
    listed: list[FileInfo] = field(default_factory=list)


def resolve(client: Client, request: GetRequest, screen: Screen) -> Wanted:
    """The server paths of ``request.paths``: patterns expanded, folders (with ``-r``) listed.

    A pattern that matches nothing is said, and counted as not there.
    Each path is fetched once, in the order first named.
    """
    wanted = Wanted()
    listings: dict[str, list[str]] = {}

    def listing(folder: str) -> list[str]:
        if folder not in listings:
            records = client.list(folder or None)
            wanted.listed.extend(records)
            listings[folder] = [info.path for info in records]
        return listings[folder]

    for typed in request.paths:
        path = globs.clean(typed)
        if globs.is_glob(path):
            found = globs.expand(
                path, listing(globs.literal_folder(path)), folders=request.recursive
            )
            if not found:
                screen.no_match(typed)
                wanted.codes.append(ExitCode.NOT_AVAILABLE)
            wanted.paths.extend(found)
        elif request.recursive and (path == "" or listing(path)):
            wanted.paths.extend(listing(path))
        elif path == "":  # `get .`: the whole repository is a folder
            screen.folder_hint(typed)
            wanted.codes.append(ExitCode.NOT_AVAILABLE)
        else:
            wanted.paths.append(path)
    wanted.paths = list(dict.fromkeys(wanted.paths))
    return wanted


def run_get(
    client: Client, request: GetRequest, screen: Screen, downloads: str | os.PathLike[str]
) -> ExitCode:
    """Fetch what ``request`` names; the exit status (the worst of its files)."""
    wanted = resolve(client, request, screen)
    paths = wanted.paths
    codes = wanted.codes
    if request.save_as is not None and len(paths) > 1:
        screen.client_error(
            f"-O names ONE file, and {printable(request.paths[0])} matches {len(paths)}: use -o DIR"
        )
        return ExitCode.USAGE
    if not paths:
        return worst(codes)
    start = time.monotonic()
    bar = screen.transfer_bar(request.save_as and paths[0])
    outcomes = _fetch(client, request, paths, downloads, bar, wanted.listed)
    if bar is not None:
        bar.finish()
    seconds = time.monotonic() - start
    shown: set[int] = set()  # a broken connection is the outcome of every file left: say it once
    for path, outcome in zip(paths, outcomes, strict=True):
        if request.json:
            print_json_line(screen, result_json(path, outcome))
        if isinstance(outcome, DownloadResult):
            if not request.json:
                screen.download(outcome)
            if outcome.outcome is Outcome.KEPT:
                codes.append(ExitCode.KEPT)
            continue
        codes.append(exit_code_for(outcome))
        if id(outcome) in shown:
            continue
        shown.add(id(outcome))
        if isinstance(outcome, Forbidden) and _is_folder(client, path):
            screen.folder_hint(path)
        else:
            show_failure(screen, outcome, path)
    if not request.json and (len(outcomes) > 1 or screen.verbosity >= VERBOSE):
        _get_summary(screen, outcomes, seconds)
    return worst(codes)


def _get_summary(
    screen: Screen, outcomes: list[DownloadResult | FiledockError], seconds: float
) -> None:
    """The line after a ``get`` of several files: how many of each, the bytes moved, the rate."""
    done, failed, moved = count_outcomes(outcomes, (Outcome.SKIPPED, Outcome.KEPT))
    screen.transfer_summary(done, failed, moved, seconds)


def count_outcomes(
    outcomes: Sequence[DownloadResult | UploadResult | FiledockError], idle: tuple[object, ...]
) -> tuple[Counter[str], int, int]:
    """How many files ended each way, how many failed, and the bytes moved (none
    for an outcome in ``idle``, only those after the offset for a resumed one)."""
    done: Counter[str] = Counter()
    moved = failed = 0
    for outcome in outcomes:
        if isinstance(outcome, FiledockError):
            failed += 1
            continue
        done[str(outcome.outcome)] += 1
        if outcome.outcome not in idle:
            moved += outcome.size - outcome.resumed_from
    return done, failed, moved


def _fetch(
    client: Client,
    request: GetRequest,
    paths: list[str],
    downloads: str | os.PathLike[str],
    bar: TransferBar | None,
    listed: list[FileInfo],
) -> list[DownloadResult | FiledockError]:
    dest = request.output if request.output is not None else downloads
    if request.save_as is None:
        return client.get_many(
            paths,
            dest,
            resume=request.resume,
            no_clobber=request.no_clobber,
            progress=bar,
            listing=listed,
        )
    try:
        return [
            client.download(
                paths[0],
                dest,
                save_as=Path(request.save_as),
                resume=request.resume,
                no_clobber=request.no_clobber,
                progress=bar,
            )
        ]
    except (ServerClosing, ConnectionLost, ProtocolError):
        raise  # the session is over: the caller says so
    except FiledockError as exc:
        return [exc]


def _is_folder(client: Client, path: str) -> bool:
    """Whether ``path`` is a folder on the server (it has files under it)."""
    if client.closed or globs.is_glob(path):
        return False
    try:
        return bool(client.list(path))
    except FiledockError:  # a v1 server (no LIST <folder>), a connection gone: no hint
        return False


def run_mirror(client: Client, request: MirrorRequest, screen: Screen) -> ExitCode:
    """Make ``request.dest`` match the server's folder; the exit status (the worst failure)."""
    seen: list[Change] = []

    def on_change(change: Change) -> None:
        seen.append(change)
        _show_change(screen, change, request)

    folder = globs.clean(request.folder) if request.folder is not None else None
    bar = screen.transfer_bar()
    start = time.monotonic()
    summary = client.mirror(
        folder or None,
        request.dest,
        delete=request.delete,
        dry_run=request.dry_run,
        progress=bar,
        on_change=on_change,
    )
    if bar is not None:
        bar.finish()
    seconds = time.monotonic() - start
    told = {id(change) for change in seen}
    for change in summary.changes:  # those found only once moving (a failed file)
        if id(change) not in told:
            _show_change(screen, change, request)
    if request.json:
        print_json_line(screen, summary_json(summary, seconds, dry_run=request.dry_run))
    else:
        screen.mirror_summary(summary, seconds, dry_run=request.dry_run)
    return worst(exit_code_for(change.error) for change in summary.changes if change.error)


def _show_change(screen: Screen, change: Change, request: MirrorRequest) -> None:
    if request.json:
        print_json_line(screen, change_json(change, dry_run=request.dry_run))
    if not request.json or change.error is not None:  # people still read why on stderr
        screen.change(change, dry_run=request.dry_run)


def show_failure(screen: Screen, error: FiledockError, path: str) -> None:
    """The lines that say why ``path`` was not fetched."""
    if isinstance(error, IntegrityError):
        screen.integrity_failure(error)
    elif isinstance(error, SaveError):
        screen.client_error(f"Could not save the file: {printable(str(error))}")
    elif isinstance(error, ServerClosing):
        screen.server_closed(error)
    elif isinstance(error, RequestError):
        screen.request_error(error, path)
    elif isinstance(error, ConnectionLost):
        screen.connection_lost(str(error))
    elif isinstance(error, ProtocolError):
        screen.client_error(f"The server broke the protocol: {printable(str(error))}")
    else:
        screen.client_error(printable(str(error)))
