"""Resume records: what an interrupted download needs to go on later.

Beside the partial file ``.NAME.part`` of a download lies ``.NAME.resume``, a
small JSON file written when the body starts: the server, the path, the size,
the SHA-256 when the header gave it, the kernel's boot id, a *durable*
length, the bytes of the partial known to be on the disk (fsynced), and the
longest fsynced prefix whose SHA-256 state and piece tags are known
(:class:`~.ledger.HashedPrefix`), so a resume goes on hashing from there.

How much of a partial can be trusted (see PROTOCOL.md, "Resuming a download"):
on the same boot all of it, since a killed process loses nothing the kernel
already took; after a crash or a power cut only the durable length, since
the end of the file may hold blocks never written. Either way every byte of
the prefix is checked before the file is kept: the hashed prefix against its
tags, the rest hashed again from the disk; and the whole file's SHA-256
decides, so a damaged byte costs a second download, never a wrong file.
Records of the first version (no hashed prefix) are resumed by hashing the
whole prefix again.

Only bodies over ``INLINE_LIMIT`` get a record: a smaller one is read whole
before its first write, so an interrupted one leaves nothing to resume.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import IntegrityError, ProtocolError, RequestError, SaveError
from . import ledger as ledgers
from .download import hidden_path
from .ledger import EMPTY, HashedPrefix, Ledger

RECORD_SUFFIX = ".resume"
_VERSION = 2
_VERSIONS = (1, 2)  # a record of version 1 has no hashed prefix: it is hashed again
# A record is a few KiB (MAX_PIECES pieces and the resumes' bridges); anything
# much larger is not one.
_RECORD_LIMIT = 1024 * 1024
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"

# The partial is fsynced and the record's durable length moved on after this
# many bytes or seconds, whichever comes first: a power cut costs at most that.
CHECKPOINT_BYTES = 64 * 1024 * 1024
CHECKPOINT_SECONDS = 1.0


@functools.cache
def boot_id() -> str:
    """This boot of the kernel ("" where it cannot be told: then only the durable length counts)."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""


def record_path(dest: Path) -> Path:
    return hidden_path(dest, RECORD_SUFFIX)


@dataclass(frozen=True, slots=True)
class ResumeRecord:
    """The resume record of one partial file."""

    server: str  # host:port
    path: str  # the server's path
    size: int
    sha256: str | None  # None: the header had no digest (a cold GET); HASH tells it
    boot: str
    durable: int = 0
    hashed: HashedPrefix | None = None  # None: the prefix must be hashed again

    def hashed_within(self, length: int) -> HashedPrefix:
        """The hashed prefix, if a partial cut to ``length`` still holds all of it."""
        if self.hashed is None or self.hashed.length > length:
            return EMPTY
        return self.hashed

    def good_length(self, partial_size: int) -> int:
        """How many bytes of a partial of ``partial_size`` may be used."""
        length = min(partial_size, self.size)
        if self.boot and self.boot == boot_id():
            return length
        return min(length, self.durable)

    def save(self, dest: Path) -> None:
        """Write the record beside ``dest``'s partial; a failure only loses the resume.

        Always a new file, renamed over the name: whatever had it (a hard link
        to a file elsewhere, a FIFO) is replaced, never written into or waited
        on, and a process killed in between leaves the old record, not none.
        """
        fields = asdict(self) | {"version": _VERSION}
        fields["hashed"] = None if self.hashed is None else self.hashed.to_fields()
        path = record_path(dest)
        fresh = path.with_name(path.name + ".new")
        with contextlib.suppress(OSError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fresh)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(fresh, flags, 0o666)
            try:
                os.write(fd, json.dumps(fields).encode())
            finally:
                os.close(fd)
            os.replace(fresh, path)


def new_record(server: str, path: str, size: int, sha256: str | None) -> ResumeRecord:
    return ResumeRecord(server, path, size, sha256, boot_id())


def load_record(dest: Path) -> ResumeRecord | None:
    """The record beside ``dest``'s partial, or None (none, torn, of another version)."""
    try:
        fields = json.loads(_read_regular(record_path(dest), _RECORD_LIMIT))
        if not isinstance(fields, dict) or fields.pop("version", None) not in _VERSIONS:
            return None
        if "hashed" in fields:
            hashed = fields["hashed"]
            fields["hashed"] = None if hashed is None else HashedPrefix.from_fields(hashed)
            if hashed is not None and fields["hashed"] is None:
                return None  # tampered or torn: nothing in it can be relied on
        record = ResumeRecord(**fields)
    except (OSError, ValueError, TypeError):
        return None
    sha = record.sha256
    valid = (
        isinstance(record.server, str)
        and isinstance(record.path, str)
        and _count(record.size)
        and _count(record.durable)
        and isinstance(record.boot, str)
        and (sha is None or (isinstance(sha, str) and len(sha) == 64))
        and (record.hashed is None or record.hashed.length <= record.size)
    )
    return record if valid else None


def _read_regular(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file ``path``; OSError for anything
    else (a FIFO would block the read, a symbolic link point anywhere)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def remove_record(dest: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(record_path(dest))


class Checkpoints:
    """Moves a record's durable length on as a body is written (called from the writer).

    The ``fdatasync`` runs in a thread of its own, so the download never waits
    for the disk: a resumed partial's first sync writes back everything the
    killed download left in the page cache, hundreds of MiB, which held the
    whole pipeline up. The durable length is the bytes written before the sync
    began, so the record never runs ahead of the disk. At most one sync is in
    flight; :meth:`finish` ends the record's updates before the partial is
    renamed, kept or removed: waiting for that sync (a body cut short, whose
    record a resume starts from), or leaving it to the disk (a body received
    whole). ``offset`` is where this body starts in the file (a resume's offset).

    :attr:`ledger` gathers the hash states and piece tags of the body (None
    where SHA-256's state cannot be saved: see :mod:`.sha256state`); each
    record then holds the longest prefix it vouches for within the durable length.
    """

    def __init__(
        self,
        fd: int,
        dest: Path,
        record: ResumeRecord,
        offset: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd = fd
        self.dest = dest
        base = record.hashed_within(offset)
        self.record = replace(record, hashed=_kept(base))
        self.offset = offset
        self.ledger = Ledger(record.size, offset, base) if ledgers.available() else None
        self._clock = clock
        self._bytes = 0
        self._at = clock()
        self._syncing: threading.Thread | None = None
        self._lock = threading.Lock()  # held while a sync's record is saved
        self._finished = False  # a sync that ends after finish(wait=False) saves nothing

    def __call__(self, written: int) -> None:
        now = self._clock()
        if written - self._bytes < CHECKPOINT_BYTES and now - self._at < CHECKPOINT_SECONDS:
            return
        if self._syncing is not None and self._syncing.is_alive():
            return  # the disk is behind: the next write after this sync tries again
        self._bytes, self._at = written, now
        self._syncing = threading.Thread(
            target=self._sync, args=(written,), name="filedock-sync", daemon=True
        )
        self._syncing.start()

    def _sync(self, written: int) -> None:
        try:
            os.fdatasync(self.fd)  # the bytes first: the record never runs ahead of the disk
        except OSError:
            return
        durable = self.offset + written
        with self._lock:
            if self._finished:
                return  # the download is done with the record (it may be gone already)
            ledger = self.ledger
            hashed = self.record.hashed if ledger is None else _kept(ledger.vouched(durable))
            self.record = replace(self.record, durable=durable, hashed=hashed)
            self.record.save(self.dest)

    def finish(self, *, wait: bool = True) -> None:
        """Nothing touches the partial's record after this.

        ``wait``: for the sync in flight, so the record holds what it made
        durable. Without, the sync is left to finish on its own, unrecorded:
        a body received whole has its record removed next, and on a disk
        slower than the network that sync can take seconds (everything
        written since the last one).
        """
        if not wait:
            with self._lock:
                self._finished = True
        elif self._syncing is not None:
            self._syncing.join()
        self._syncing = None


def _kept(prefix: HashedPrefix) -> HashedPrefix | None:
    """What a record holds of ``prefix``: nothing for an empty one."""
    return prefix if prefix.length else None


def keeps_partial(exc: BaseException) -> bool:
    """Whether a download cut short by ``exc`` keeps its partial for a resume:
    an interruption does (Ctrl-C, a lost connection, an exit); a refusal, a
    failed check or a write error does not."""
    return not isinstance(exc, RequestError | ProtocolError | IntegrityError | SaveError)
