"""What to do with each file of a download, decided before any body moves.

A download looks at the destination and at any partial file with a resume
record (:func:`look`), asks the server's size and SHA-256 with ``HASH`` only
when there is something local to compare (:meth:`FilePlan.needs_hash`), then
:func:`decide`: skip an identical file, keep a different one under
``no_clobber``, resume a partial whose record still matches, or fetch whole.
A missing destination with no partial is fetched at once: its first byte
waits for no ``HASH``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..errors import FiledockError, SaveError
from ..protocol import FileDigest, FileInfo
from .download import Partial, linked_folder, refused_link
from .localdigests import LocalDigests
from .results import Outcome
from .resume import ResumeRecord, load_record, record_path, remove_record


class Action(StrEnum):
    FETCH = "fetch"  # GET the whole file
    RESUME = "resume"  # RANGE from the partial's good length
    SKIP = "skip"  # already there
    KEEP = "keep"  # different, kept (no_clobber)
    FAIL = "fail"  # refused (error says why)


CHANGED_ON_SERVER = "the server's file changed since the partial download"
DAMAGED_PARTIAL = "the partial file did not verify (damaged on disk, or the file changed)"


@dataclass(slots=True)
class FilePlan:
    """One file of a download: what is known of it, and what will be done."""

    path: str  # the server's path
    dest: Path | None  # None: only the server's answer can name it (a path unsafe here)
    listed: FileInfo | None = None  # from LIST, for a folder's download
    lstat: os.stat_result | None = None  # the destination's, if it exists
    record: ResumeRecord | None = None
    partial: Partial | None = None  # locked, when a record matches
    prefix_length: int = 0  # the partial's good length: what RANGE starts from
    remote: FileDigest | None = None  # from HASH
    action: Action = Action.FETCH
    error: FiledockError | None = None
    restarted: str | None = None
    stale_record: bool = False  # not resuming: a record an earlier download may have left
    root: Path | None = None  # the folder asked for, that ``dest`` must stay inside

    @property
    def exists(self) -> bool:
        return self.lstat is not None

    def needs_hash(self) -> bool:
        """Whether HASH must answer before deciding: something local to compare."""
        if self.partial is not None:
            return True
        if self.lstat is not None and stat.S_ISDIR(self.lstat.st_mode):
            # A folder here: refused if the server has a file (a listing says so),
            # and the server's own answer if it has a folder too.
            return self.listed is None
        if self.lstat is None or not stat.S_ISREG(self.lstat.st_mode):
            return False
        return self.listed is None or self.listed.size == self.lstat.st_size

    def mtime_ns(self) -> int | None:
        """The server's mtime, when HASH or LIST told it."""
        known = self.remote or self.listed
        return None if known is None else int(known.mtime.timestamp()) * 1_000_000_000

    def outcome(self) -> Outcome:
        if self.action is Action.SKIP:
            return Outcome.SKIPPED
        if self.action is Action.KEEP:
            return Outcome.KEPT
        if self.exists:
            return Outcome.REPLACED
        return Outcome.RESUMED if self.action is Action.RESUME else Outcome.FETCHED

    def drop_partial(self, reason: str | None = None) -> None:
        """Throw the partial and its record away (``reason``: say why in the result)."""
        had_record = self.record is not None or self.stale_record
        if self.partial is not None:
            self.partial.discard()
            self.partial = None
            self.restarted = reason or self.restarted
        if had_record and self.dest is not None:
            remove_record(self.dest)
        self.record = None
        self.stale_record = False

    def release(self) -> None:
        """Let go of the partial, keeping it for a later resume."""
        if self.partial is not None:
            self.partial.keep()
            self.partial = None


class FolderIndex:
    """The names in each destination folder, read once per folder: a download
    of many files then costs no lstat for a file that is not there, and no
    failed open for a resume record that is not there."""

    def __init__(self) -> None:
        self._names: dict[Path, frozenset[str] | None] = {}
        self.real_folders: set[Path] = set()  # checked: no symbolic link

    def names(self, folder: Path) -> frozenset[str] | None:
        """The names in ``folder`` (none if it is missing); None if it cannot be read."""
        if folder not in self._names:
            try:
                self._names[folder] = frozenset(os.listdir(folder))
            except FileNotFoundError:
                self._names[folder] = frozenset()
            except OSError:
                self._names[folder] = None  # look at each file instead
        return self._names[folder]


def look(
    plan: FilePlan,
    server: str,
    *,
    resume: bool,
    index: FolderIndex | None = None,
    dry_run: bool = False,
) -> None:
    """What is at the destination: the file's lstat, and a partial that can be resumed.

    A record whose partial is gone is removed (not in a ``dry_run``). Raises
    :class:`SaveError` when another client is writing the partial, or when a
    folder between the plan's root and its destination is a symbolic link.
    """
    dest = plan.dest
    if dest is None:
        return
    if plan.root is not None:
        checked = None if index is None else index.real_folders
        link = linked_folder(plan.root, dest, checked)
        if link is not None:
            raise SaveError(refused_link(link, plan.root))
    names = None if index is None else index.names(dest.parent)
    plan.lstat = None
    if names is None or dest.name in names:
        with contextlib.suppress(OSError):
            plan.lstat = os.lstat(dest)
    if names is not None and record_path(dest).name not in names:
        return
    if not resume:
        plan.stale_record = True  # thrown away with the GET: the partial is started again
        return
    record = load_record(dest)  # one failed open when there is none
    if record is None or record.server != server or record.path != plan.path:
        return
    partial = Partial.reopen(dest)
    if partial is None:
        if not dry_run:
            remove_record(dest)
        return
    # Nothing on disk changes yet (a dry run changes nothing): the partial is
    # cut to this length only when its RANGE goes out.
    plan.prefix_length = record.good_length(partial.size())
    plan.record, plan.partial = record, partial


def decide(plan: FilePlan, digests: LocalDigests, *, no_clobber: bool) -> None:
    """Choose the plan's action from what is local and the server's HASH (if asked)."""
    if plan.error is not None:
        plan.action = Action.FAIL
        return
    remote, st = plan.remote, plan.lstat
    if st is not None and stat.S_ISREG(st.st_mode) and plan.dest is not None:
        same_size = remote is not None and remote.size == st.st_size
        if same_size and remote and digests.digest_of(plan.dest, st) == remote.sha256:
            plan.action = Action.SKIP
            return
        if no_clobber:
            plan.action = Action.KEEP
            return
    elif st is not None and no_clobber:
        plan.action = Action.KEEP
        return
    elif st is not None and stat.S_ISDIR(st.st_mode) and plan.dest is not None:
        # Refused before any byte moves: the rename would fail after the whole body.
        plan.error = SaveError(f"cannot save {plan.dest}: a folder has that name")
        plan.action = Action.FAIL
        plan.release()
        return
    record = plan.record
    if record is not None and remote is not None:
        # A partial not resumed is thrown away when its GET goes out, not here.
        if record.size != remote.size or record.sha256 not in (None, remote.sha256):
            plan.restarted = CHANGED_ON_SERVER
        else:
            # The prefix is hashed during the RANGE: one that cannot be read does
            # not verify, and the file is fetched whole then.
            plan.action = Action.RESUME
            return
    plan.action = Action.FETCH
