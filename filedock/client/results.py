"""What the download methods return and report: outcomes, summaries, progress.

These are plain values, shared by every method of :class:`~filedock.client.client.Client`
that moves a file, so a caller handles one shape whichever method it used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ..errors import FiledockError


class Outcome(StrEnum):
    """What happened to one file."""

    FETCHED = "fetched"  # it was not there: downloaded whole
    RESUMED = "resumed"  # a partial was continued with RANGE
    SKIPPED = "skipped"  # already there with the server's size and SHA-256
    REPLACED = "replaced"  # a different local file was replaced (atomically)
    KEPT = "kept"  # no_clobber: a different local file was kept, nothing fetched


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A file downloaded (or found already there): where it is, its size and its
    verified SHA-256, what was done, and for a resume how much was there already.

    ``restarted`` says why a partial file was thrown away and the file fetched
    from its first byte (the server's file changed, the partial did not verify).
    A KEPT file reports its own size, and its SHA-256 only if it was looked at
    (same size as the server's), else "".

    >>> result = client.download("sample.txt", "downloads")
    >>> result.path, result.outcome, result.resumed_from, result.restarted
    (PosixPath('downloads/sample.txt'), <Outcome.FETCHED: 'fetched'>, 0, None)
    """

    path: Path
    size: int
    sha256: str
    outcome: Outcome = Outcome.FETCHED
    resumed_from: int = 0
    restarted: str | None = None


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """The one argument of every progress callback.

    ``done`` counts the bytes of the file moving now that are on disk (a resume
    starts at its offset), ``bytes_done`` the body bytes this call received
    over all its files.
    """

    path: str  # server path of the file moving now
    done: int  # bytes of that file on disk
    total: int  # that file's size
    files_done: int  # files finished (any outcome) in this call
    files_total: int  # files this call handles (1 for a single download)
    bytes_done: int  # body bytes received in this call, all files
    bytes_total: int  # body bytes this call expects to receive, all files


ProgressCallback = Callable[[TransferProgress], None]


@dataclass(frozen=True, slots=True)
class Change:
    """One thing :meth:`Client.mirror` or :meth:`Client.download_tree` did (or,
    with ``dry_run``, would do) to a local file.

    ``action`` is "fetch", "resume", "replace", "keep", "delete" or "fail";
    ``path`` the server path ("" for a local file being deleted).
    """

    action: str
    path: str
    local: Path
    size: int
    error: FiledockError | None = None


@dataclass(frozen=True, slots=True)
class TreeSummary:
    """What a folder download or a mirror did: counts, body bytes, each change in order.

    ``fetched`` counts files fetched whole or resumed; ``bytes`` the body bytes
    received; ``results`` one outcome per server file, in listing order.
    """

    fetched: int = 0
    skipped: int = 0
    replaced: int = 0
    deleted: int = 0
    failed: int = 0
    kept: int = 0
    bytes: int = 0
    changes: list[Change] = field(default_factory=list)
    results: list[DownloadResult | FiledockError] = field(default_factory=list)


class ProgressMeter:
    """Turns one call's byte counts into :class:`TransferProgress` for its callback.

    A call says how many files and body bytes it expects (when it knows),
    then, per file, gets a ``(done, total)`` counter from :meth:`file` that
    the body receivers call; :meth:`finished` counts a file done.
    """

    def __init__(
        self,
        callback: ProgressCallback | None,
        files_total: int = 1,
        bytes_total: int | None = None,
    ) -> None:
        self.callback = callback
        self.files_total = files_total
        self.files_done = 0
        # None: not known before the headers come, so each header adds its body.
        self._learn = bytes_total is None
        self.bytes_total = bytes_total or 0
        self.bytes_done = 0  # body bytes of the files finished

    def file(self, path: str, offset: int, size: int) -> Callable[[int, int], None] | None:
        """The counter for the body of ``path`` (``size`` bytes) received from ``offset``."""
        if self._learn:
            self.bytes_total += size - offset
        callback = self.callback
        if callback is None:
            return None
        before = self.bytes_done

        def count(done: int, total: int) -> None:
            callback(
                TransferProgress(
                    path,
                    offset + done,
                    size,
                    self.files_done,
                    self.files_total,
                    before + done,
                    max(self.bytes_total, before + done),
                )
            )

        return count

    def received(self, count: int) -> None:
        """Count ``count`` body bytes received in all for the file just finished."""
        self.bytes_done += count

    def finished(self) -> None:
        self.files_done += 1


class UploadOutcome(StrEnum):
    """What happened to one file sent to the server."""

    STORED = "stored"  # sent whole, checked and placed by the server
    RESUMED = "resumed"  # the server held part of it (READY <offset>): the rest was sent
    SKIPPED = "skipped"  # the server has it already, same size and SHA-256 (by HASH)


@dataclass(frozen=True, slots=True)
class UploadResult:
    """A file the server stored (or already had): its server path, size and
    SHA-256, what was done, and for a resume the bytes the server held already.

    >>> result = client.upload("notes.txt", "inbox/notes.txt")
    >>> result.path, result.outcome, result.resumed_from
    ('inbox/notes.txt', <UploadOutcome.STORED: 'stored'>, 0)
    """

    path: str
    size: int
    sha256: str
    resumed_from: int = 0
    outcome: UploadOutcome = UploadOutcome.STORED
    local: Path | None = None  # the local file it was read from


@dataclass(frozen=True, slots=True)
class UploadSummary:
    """What a folder upload did: counts, body bytes sent, one outcome per local file.

    ``results`` are in the order the files were found (folders sorted by name),
    each the :class:`UploadResult` or the error that file met; ``files`` says
    which, ``(local path, server path)``, one for each result.
    """

    stored: int = 0
    resumed: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    results: list[UploadResult | FiledockError] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)
