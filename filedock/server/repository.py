"""The repository: what a client may read, the listing, and the hash cache.

The repository is a boundary. Every read on behalf of a client walks the
client's path one component at a time from a descriptor of the root: each
step opens one name relative to the folder before it and never follows a
symlink on its own (``O_NOFOLLOW``), so what is opened is what was checked,
and a folder swapped for a symlink mid-walk cannot lead outside. A symlink
met on the way is read and its target walked under the same rule (relative to
its folder, never above the root), so links that stay inside keep working, as
with nginx's ``disable_symlinks``. The listing walks folders the same way.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import hashlib
import heapq
import itertools
import logging
import mmap
import os
import stat
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from .. import protocol as p
from ..digests import DigestStore, Key, NoStore
from ..errors import Forbidden, NotFound, RequestError
from ..protocol import FileInfo, FileRecord
from . import beneath
from .shared_digests import SharedStore
from .stats import Statistics
from .workers import Stopping, WorkerPool, Workers

if TYPE_CHECKING:
    from .listing_cache import ScanWatches

log = logging.getLogger("filedock.server.repository")

# Characters that cannot travel inside one protocol line or one record field.
_UNSENDABLE = frozenset("\t\r\n")
# ... and those no client path may hold besides.
_REFUSED_CHARACTERS = ("\0", "\\", *_UNSENDABLE)

# A file this small is hashed in one read, beside the listings (see HashCache._pool_for).
SMALL_FILE_BYTES = 1024 * 1024

# A file this small is hashed on the loop, in one read: its read and hash
# (about 60 µs for 64 KiB here, 4 µs for 4 KiB) cost no more than the round
# trip to a worker thread and back (about 90 µs), and looking it up in the
# store on disk would cost more than hashing it again.
INLINE_HASH_BYTES = 64 * 1024

# Hashing reads this much at a time: large enough that hashlib releases the
# GIL and system calls are few, small enough to stay in the CPU cache.
_HASH_CHUNK = 1024 * 1024

# Names logged as unservable are remembered so each is logged once; the set
# is bounded so a hostile folder of millions of names costs little memory.
_MAX_REPORTED_NAMES = 10_000

# Symlinks one walk may follow, as the kernel's own limit (MAXSYMLINKS).
MAX_SYMLINK_HOPS = 40
# Components one walk may take, those of symlink targets included: 40 targets
# of 2000 "./" each would be 80,000 steps of Python for one request line.
MAX_WALK_STEPS = 1024

# A file changed this recently may change again within the file system's
# timestamp granularity without its key changing (git's "racy" rule), so its
# digest is not cached. 2 s covers FAT's mtime, the coarsest in use.
RACY_NS = 2_000_000_000

# Digests kept in memory: a warm GET of any of this many files needs no thread.
# About 420 bytes each (key, digest, order), so some 27 MB when full; past it
# the digest store on disk answers (see digests.MAX_ROWS).
MEMORY_DIGESTS = 65_536

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the lstat cannot block the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_ABOVE_ROOT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class FileKey:
    """What identifies a file's contents for the hash cache.

    ``ctime_ns`` is there because ``utime()`` can put an mtime back but
    nothing can put a ctime back: a same-size rewrite always changes the key.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def changed_at(self) -> int:
        """When the file last changed (ns since the epoch)."""
        return max(self.mtime_ns, self.ctime_ns)

    def row(self) -> Key:
        """The key as the digest store keeps it."""
        return (self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns)


class OpenedFile:
    """A repository file opened for one download; close it when done.

    ``size`` is the size at open: the file is served and hashed up to there,
    so a file being appended to (a live log) is served as a consistent prefix.
    """

    __slots__ = ("fd", "path", "key")

    def __init__(self, fd: int, path: str, key: FileKey) -> None:
        self.fd = fd
        self.path = path
        self.key = key

    @property
    def size(self) -> int:
        return self.key.size

    def unchanged(self) -> bool:
        """Whether the file still has the key it had when opened."""
        return FileKey.of(os.fstat(self.fd)) == self.key

    def served_whole(self) -> bool:
        """Whether its first ``size`` bytes can still be trusted to be those it
        had at open: unchanged, or grown (a live log, served as its prefix, the
        rule :func:`hash_opened` applies too)."""
        now = FileKey.of(os.fstat(self.fd))
        return now == self.key or now.size > self.key.size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Repository:
    """The folder a server shares, read-only.

    Its methods block: run them in a worker, except :meth:`open` with a
    ``max_steps`` budget, whose cost is bounded like a plain request's.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        hash_cache_size: int = MEMORY_DIGESTS,
        workers: Workers | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_line: int = p.DEFAULT_MAX_LINE,
        stats: Statistics | None = None,
    ) -> None:
        self.root = os.path.realpath(root)
        # The listing offers only paths a request line of this server can carry.
        self.max_path_bytes = p.longest_request_path(max_line)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"repository is not a folder: {os.fspath(root)}")
        self.hashes = HashCache(hash_cache_size, workers=workers, clock=clock, stats=stats)
        self._reported: set[str] = set()
        self._root_folder = _RootFolder(self.root)

    def close(self) -> None:
        """Release the folder held open, and the threads of a repository made
        without a server's workers."""
        self._root_folder.close()
        self.hashes.close()

    # -- the boundary -------------------------------------------------------

    def open(self, client_path: str, *, max_steps: int | None = None) -> OpenedFile:
        """Open the regular file ``client_path`` names, in one walk, for a download.

        Raises :class:`Forbidden` for a path that leaves the repository (``..``,
        absolute, a symlink leading outside), a hidden name, a backslash or
        NUL, a path over the caps, or anything that is not a regular file;
        :class:`NotFound` when there is nothing there. Any other OS error on the
        way is a :class:`Forbidden` too. Error texts never show the server's paths.
        With ``max_steps``, raises :class:`WalkTooLong` (having opened nothing)
        rather than take more steps than that.
        """
        check_client_path(client_path)
        folder, _, name = client_path.rpartition("/")
        if not folder:
            folder_fd: int | None = self._open_root()
        elif max_steps is None or client_path.count("/") < max_steps:
            folder_fd = self._open_folder(folder)
        else:
            folder_fd = None  # as many folders as a walk would take too long for the loop
        if folder_fd is not None:
            try:
                opened = _open_plain_file(folder_fd, name, client_path)
            finally:
                os.close(folder_fd)
            if opened is not None:
                return opened
        # Not a plain file in real folders (or no openat2 here): walked by the rules.
        root_fd = self._open_root()  # (no context manager: this runs once a GET, on the loop)
        try:
            fd, st, _ = _Walk(self.root, root_fd, max_steps).to(client_path.split("/"))
        finally:
            os.close(root_fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise Forbidden("not a regular file")
        return OpenedFile(fd, client_path, FileKey.of(st))

    def _open_folder(self, folder: str) -> int | None:
        """The folder ``folder`` (a checked client path) in one call where it is real
        folders all the way (see :mod:`.beneath`), else None: the walk's to open."""
        try:
            return self._root_folder.open_folder(folder)
        except OSError as exc:
            raise _request_error(exc) from None

    def resolve(self, client_path: str) -> str:
        """The real path of the file ``client_path`` names, or the error :meth:`open` gives.

        For information only: open a file with :meth:`open`, never by this path.
        """
        check_client_path(client_path)
        with self._root() as root_fd:
            fd, st, names = _Walk(self.root, root_fd).to(client_path.split("/"))
        os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden("not a regular file")
        return os.path.join(self.root, *names)

    def serves(self, client_path: str) -> bool:
        """Whether ``client_path`` names a file this repository would serve."""
        try:
            self.open(client_path).close()
        except RequestError:
            return False
        return True

    def open_root(self) -> contextlib.AbstractContextManager[int]:
        """A descriptor of the root, as every walk starts from (see :meth:`_root`)."""
        return self._root()

    @contextlib.contextmanager
    def _root(self) -> Iterator[int]:
        """A descriptor of the root, opened now (see :meth:`_open_root`), closed after."""
        fd = self._open_root()
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_root(self) -> int:
        """A descriptor of the root, opened now, the caller's to close: a folder put
        in its place at run time is served, a symlink put there (or in place of a
        folder above it) is not."""
        try:
            return self._root_folder.open()
        except OSError:
            raise NotFound("the repository is not available") from None

    # -- listing ----------------------------------------------------------

    def listing(self, cancelled: Callable[[], bool] = lambda: False) -> list[FileInfo]:
        """Every file the repository serves, sorted by path (see :meth:`records`)."""
        return [
            FileInfo(path, size, datetime.fromtimestamp(mtime, UTC))
            for path, size, mtime in self.records(cancelled)
        ]

    def records(self, cancelled: Callable[[], bool] = lambda: False) -> list[FileRecord]:
        """Every file the repository serves as ``(path, size, mtime)``, sorted by path.

        Folders are walked with an explicit stack (a deep tree cannot exhaust
        the interpreter's recursion), at most :data:`protocol.MAX_PATH_COMPONENTS`
        levels down. ``cancelled`` is polled every few hundred entries; once it
        is true, raises :class:`Stopping`.
        """
        _, runs = self._scan(cancelled, _as_they_are)
        return [record for run in runs for record in run]

    def reply_records(
        self,
        folder: str | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        watches: ScanWatches | None = None,
        *,
        inline: bool = False,
    ) -> EncodedListing:
        """The FILES record lines of :meth:`records` (with ``folder``, of those under
        it: ``docs/`` is ``docs``), encoded a piece of at most :data:`RUN_RECORDS`
        records at a time, in order.

        With ``folder``, only that folder's subtree is read when the walk to it
        and everything in it are real folders. A symlinked folder's files are
        listed under the link's path only if no real path (nor a link scanned
        first) reaches it, which the whole listing alone can tell: one in there
        makes the whole listing be read. A folder no request could name
        (hidden, leaving the repository) holds nothing.

        With ``watches``, every folder read is watched before it is read (see
        :mod:`.listing_cache`), and a listing its folders' events could not
        vouch for (a symlink met, a folder unreadable) is marked spoiled.

        ``inline`` (on the event loop) raises :class:`ListingTooLong` past
        :data:`INLINE_TICKS` ticks (an entry read, an entry visited, a folder
        entered: :data:`FOLDER_TICKS`), at a symlink, at a folder bigger than
        :data:`INLINE_FOLDER_BYTES` or not watched yet (with ``watches``), or
        when only the whole listing can tell this one.
        """
        encode = p.encode_file_records
        budget = INLINE_TICKS if inline else None
        if folder is None:
            return EncodedListing(*self._scan(cancelled, encode, watches=watches, budget=budget))
        folder = folder.rstrip("/")
        try:
            check_client_path(folder)
        except Forbidden:
            if watches is not None:
                watches.spoil()  # nothing was read: nothing would tell it changed
            return EncodedListing(0, [])
        try:
            return EncodedListing(
                *self._scan(cancelled, encode, folder.split("/"), watches, budget)
            )
        except _LinkedFolder:
            if watches is not None:
                watches.spoil()
            if inline:
                raise ListingTooLong(folder) from None
            under = records_in(self.records(cancelled), folder)
            pieces = [
                encode(under[at : at + RUN_RECORDS]) for at in range(0, len(under), RUN_RECORDS)
            ]
            return EncodedListing(len(under), pieces)

    def _scan(
        self,
        cancelled: Callable[[], bool],
        pack: Callable[[list[FileRecord]], _Packed],
        under: list[str] | None = None,
        watches: ScanWatches | None = None,
        budget: int | None = None,
    ) -> tuple[int, list[_Packed]]:
        """(records, their pieces in order) of the whole listing, or of the folder
        ``under`` names (see :meth:`reply_records`); past ``budget`` ticks,
        :class:`ListingTooLong`."""
        try:
            with self._root() as root_fd:
                scan = _Scan(self, root_fd, cancelled, pack, watches, budget)
                pieces = scan.run() if under is None else scan.run_under(under)
        except NotFound:
            if watches is not None:
                watches.spoil()
            self.report("root", "Cannot read the repository folder")
            return 0, []
        return scan.count, pieces

    def report(self, key: str, message: str, *args: object) -> None:
        """Log ``message`` once for ``key`` (bounded), not at every listing."""
        if key in self._reported or len(self._reported) >= _MAX_REPORTED_NAMES:
            return
        self._reported.add(key)
        log.warning(message, *args)

    def listable(self, path: str) -> bool:
        """Whether a path found on disk could be asked for again; logs once each one
        that cannot. The rules are :func:`check_client_path`'s, so that ``LIST``
        offers nothing ``GET`` refuses."""
        reason = self._unrequestable(path)
        if reason is not None:
            self.report(path, "Not listing %a: %s", path, reason)
            return False
        return True

    def _unrequestable(self, path: str) -> str | None:
        """Why no request can name ``path``, or None when one can."""
        try:
            size = len(path.encode("utf-8"))
        except UnicodeEncodeError:  # not UTF-8 on disk: scandir gave surrogates
            return "the name is not UTF-8"
        if _UNSENDABLE.intersection(path):
            return "the name cannot travel on one protocol line"
        try:
            check_client_path(path)
        except Forbidden as exc:
            return f"a request for it is refused ({exc.text})"
        if size > self.max_path_bytes:
            return f"a request line cannot carry a path of {size} bytes"
        return None

    def listable_file(self, path: str) -> bool:
        """Besides :meth:`listable`, for a file: whether a line's padding leaves its path whole."""
        if path != path.strip(p.LINE_PADDING):
            self.report(path, "Not listing %a: a request line cannot end in a space", path)
            return False
        return True


class _RootFolder:
    """The repository's folder, held open, checked at each use with one ``stat``.

    While the root's path still leads to the folder held, the held folder is
    opened again through its descriptor: that folder was opened safely,
    whatever now lies on the path. Otherwise (the folder replaced, moved, or a
    symlink put on its path) the path is opened again, without following any
    symlink. Never a ``dup``: duplicates share one read position, so two
    listings reading the root at once would take each other's entries (or
    none, each ``scandir`` rewinding it when closed).
    """

    def __init__(self, real_path: str) -> None:
        self.path = real_path
        self._lock = threading.Lock()  # the loop and the metadata workers share it
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._close_held: Callable[[], None] = lambda: None
        with contextlib.suppress(OSError):
            os.close(self.open())

    def open(self) -> int:
        """A new descriptor of the root (the caller's to close); OSError if it is gone."""
        identity = self._identity_now()
        with self._lock:
            if identity is not None and self._identity == identity:
                return os.open(".", _DIR_FLAGS, dir_fd=self._fd)
            fd = _open_real_folder(self.path)
            try:
                opened = os.fstat(fd)
            except OSError:
                os.close(fd)
                raise
            self._close_held()  # the folder held before, if any
            self._fd, self._identity = fd, (opened.st_dev, opened.st_ino)
            # Closed once: when replaced, or when the repository is dropped.
            self._close_held = weakref.finalize(self, os.close, fd)
            return os.open(".", _DIR_FLAGS, dir_fd=fd)

    def open_folder(self, path: str) -> int | None:
        """A new descriptor of the folder ``path`` beneath the root, in one call
        (:func:`.beneath.open_folder`); None where the walk is to open it: a
        symlink on the way, no ``openat2``, or a root to open again first.
        OSError as ``open``."""
        if not beneath.available():
            return None
        identity = self._identity_now()
        with self._lock:  # (held: no other thread closes the folder meanwhile)
            if identity is None or self._identity != identity:
                return None
            return beneath.open_folder(self._fd, path)

    def _identity_now(self) -> tuple[int, int] | None:
        """What the root's path leads to now (None: nothing)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def close(self) -> None:
        """Let the held folder go; a later :meth:`open` opens the path again."""
        with self._lock:
            self._close_held()
            self._fd, self._identity = -1, None


def _open_real_folder(real_path: str) -> int:
    """Open the folder ``real_path`` (a realpath) one component at a time from ``/``,
    following no symlink: the path was resolved once, so a symlink on it now is a swap."""
    names = [name for name in real_path.split("/") if name]
    fd = os.open("/", _ROOT_FLAGS)
    try:
        for index, name in enumerate(names):
            # The folders above need only be searchable (x), as for a plain open.
            flags = _DIR_FLAGS if index == len(names) - 1 else _ABOVE_ROOT_FLAGS
            below = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_plain_file(folder_fd: int, name: str, path: str) -> OpenedFile | None:
    """The regular file ``name`` in ``folder_fd``, or None for anything else (a
    symlink, a folder, a device, a symlink since the ``lstat``): the walk's to judge."""
    try:
        st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except OSError as exc:
        raise _request_error(exc) from None
    if not stat.S_ISREG(st.st_mode):
        return None
    found = _open_regular(folder_fd, name)
    if found is None:
        return None
    fd, opened = found
    return OpenedFile(fd, path, FileKey.of(opened))


def _open_regular(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """Open ``name``, found a regular file by its ``lstat``, and ``fstat`` it; None
    where it has become a symlink since. Raises :class:`Forbidden` where it has
    become anything else that is no regular file (closed again)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise _request_error(exc) from None
    try:
        opened = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise _request_error(exc) from None
    if not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise Forbidden("not a regular file")
    return fd, opened


def check_client_path(path: str) -> None:
    """Refuse, without touching the disk, a path no repository file can have.

    Substring tests only, no loop over the components: a flood of 4 KiB
    path-like lines costs a few scans of each line in C.
    """
    if not path:
        raise Forbidden("empty path")
    if path.count("/") >= p.MAX_PATH_COMPONENTS:
        raise Forbidden(f"path has more than {p.MAX_PATH_COMPONENTS} components")
    if any(char in path for char in _REFUSED_CHARACTERS):  # substring searches, in C
        raise Forbidden("path holds a character that is not allowed")
    if path.startswith("/"):
        raise Forbidden("absolute paths are not allowed")
    framed = f"/{path}/"  # every component between two slashes
    if "/../" in framed:
        raise Forbidden("path leaves the repository")
    if "//" in framed or "/./" in framed:
        raise Forbidden("path has an empty or '.' component")
    if "/." in framed:
        raise Forbidden("hidden files are not served")
    if len(path) > _SHORT_NAME and _longest_name(path) > p.MAX_NAME_BYTES:
        raise Forbidden(f"a name is longer than {p.MAX_NAME_BYTES} bytes")


# A name of this many characters fits in MAX_NAME_BYTES whatever they are.
_SHORT_NAME = p.MAX_NAME_BYTES // 4


def _longest_name(path: str) -> int:
    """UTF-8 bytes of the longest component of ``path``."""
    parts = path.split("/")
    if path.isascii():
        return max(map(len, parts))
    return max(len(part.encode("utf-8", "surrogatepass")) for part in parts)


def _request_error(exc: OSError) -> RequestError:
    """The refusal an OS error met on a client's path becomes (never a dropped connection)."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return NotFound("no such file in the repository")
    return Forbidden("file cannot be read")


class WalkTooLong(Exception):
    """A walk would take more steps than it was allowed; nothing was opened."""


# Steps (components walked, those of symlink targets too) a walk may take on the event loop:
# about what a plain GET costs anyway, so a flood of path-like lines costs the
# loop no more than honest GETs. A longer walk is done in a metadata worker.
INLINE_STEPS = 8


class _Walk:
    """One walk from the root down to what a list of names leads to.

    ``folders`` holds a descriptor for each folder between the root and the
    current position (the root's is borrowed), so ``..`` from a symlink's
    target goes back the way the walk came, never above the root.
    """

    __slots__ = ("root", "folders", "names", "hops", "steps", "steps_left")

    def __init__(self, root: str, root_fd: int, max_steps: int | None = None) -> None:
        self.root = root
        self.folders = [root_fd]
        self.names: list[str] = []  # the real path below the root, so far
        self.hops = 0
        self.steps = 0  # components walked, symlink targets' included
        self.steps_left = max_steps

    def to(self, parts: list[str]) -> tuple[int, os.stat_result, list[str]]:
        """Open what ``parts`` names: (descriptor, its fstat, its real path's names).

        The descriptor is the caller's to close; it is a regular file or a folder.
        """
        try:
            fd, st = self._walk(parts)
        except OSError as exc:  # dup/fstat out of descriptors: still a refusal
            raise _request_error(exc) from None
        finally:
            for fd_above in self.folders[1:]:
                os.close(fd_above)
            del self.folders[1:]
        return fd, st, self.names

    def _walk(self, parts: list[str]) -> tuple[int, os.stat_result]:
        pending = parts[::-1]  # names still to walk, the next one last
        while pending:
            name = pending.pop()
            self._count_step()  # "." and ".." too: a target of 2000 "./" is not free
            if name in ("", "."):
                continue
            if name == "..":
                self._up()
                continue
            if name.startswith("."):
                raise Forbidden("hidden files are not served")
            if pending and self._enter_folder(name):
                continue
            st = self._lstat(name)
            if stat.S_ISLNK(st.st_mode):
                self._follow(name, pending)
            elif pending:
                if not stat.S_ISDIR(st.st_mode):
                    raise NotFound("no such file in the repository")
                self._enter(name, pending)
            else:
                opened = self._open_last(name, st, pending)
                if opened is not None:
                    return opened
        # The path ended on a folder (a symlink to one, or a target ending in "..").
        here = self.folders.pop() if len(self.folders) > 1 else os.dup(self.folders[0])
        return here, os.fstat(here)

    def _lstat(self, name: str) -> os.stat_result:
        try:
            return os.stat(name, dir_fd=self.folders[-1], follow_symlinks=False)
        except OSError as exc:
            raise _request_error(exc) from None

    def _enter_folder(self, name: str) -> bool:
        """Enter ``name`` if it is a real folder, with no ``lstat`` first: with
        O_DIRECTORY and O_NOFOLLOW the kernel opens nothing else. False (nothing
        opened) for a symlink or what is no folder, for the walk to look at."""
        if len(self.folders) >= p.MAX_PATH_COMPONENTS:
            raise Forbidden("path goes too deep")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.folders[-1])
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return False
            raise _request_error(exc) from None
        self.folders.append(fd)
        self.names.append(name)
        return True

    def _enter(self, name: str, pending: list[str]) -> None:
        if not self._enter_folder(name):
            self._retry(name, pending)  # swapped since the lstat: look again

    def _open_last(
        self, name: str, st: os.stat_result, pending: list[str]
    ) -> tuple[int, os.stat_result] | None:
        if stat.S_ISDIR(st.st_mode):
            pending.append("")  # walk into it, then end there
            self._enter(name, pending)
            return None
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden("not a regular file")  # never opened: a device, a FIFO
        found = _open_regular(self.folders[-1], name)
        if found is None:
            self._retry(name, pending)
            return None
        self.names.append(name)
        return found

    def _retry(self, name: str, pending: list[str]) -> None:
        """Walk ``name`` again: it changed between the lstat and the open."""
        self._count_hop()
        pending.append(name)

    def _follow(self, name: str, pending: list[str]) -> None:
        self._count_hop()
        try:
            target = os.readlink(name, dir_fd=self.folders[-1])
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # no longer a symlink
                pending.append(name)
                return
            raise _request_error(exc) from None
        if target.startswith("/"):
            inside = _below(target, self.root)
            if inside is None:
                raise Forbidden("path leaves the repository")
            self._back_to_root()
            target = inside
        pending.extend(target.split("/")[::-1])

    def _count_step(self) -> None:
        self.steps += 1
        if self.steps > MAX_WALK_STEPS:
            raise Forbidden(f"path takes more than {MAX_WALK_STEPS} steps to resolve")
        if self.steps_left is not None:
            if self.steps_left <= 0:
                raise WalkTooLong
            self.steps_left -= 1

    def _count_hop(self) -> None:
        self.hops += 1
        if self.hops > MAX_SYMLINK_HOPS:
            raise Forbidden("too many symbolic links")

    def _up(self) -> None:
        if len(self.folders) == 1:
            raise Forbidden("path leaves the repository")
        os.close(self.folders.pop())
        self.names.pop()

    def _back_to_root(self) -> None:
        while len(self.folders) > 1:
            self._up()


def _below(target: str, root: str) -> str | None:
    """``target`` relative to ``root`` when it lies inside (or is) the root, else None."""
    if target == root:
        return "."
    if target.startswith(root + "/"):
        return target[len(root) + 1 :]
    return None


# The listing polls its ``cancelled`` flag once per this many entries read or
# visited: about a millisecond of work.
_CANCEL_EVERY = 256

# A listing read on the event loop (``inline``) gives up past this many ticks
# (a folder of some 120 files: about 0.7 ms here), so that most folders skip
# the round trip to a worker and none holds the loop much longer.
INLINE_TICKS = 256

# Ticks a folder entered costs besides its entries: opening, watching and
# reading one took as long as some five files' entries (27 against 5.4 µs).
FOLDER_TICKS = 10

# What the loop leaves to a worker whatever the ticks: a folder bigger than
# this on disk (one emptied of 100,000 files is 32 MB of blocks to read
# through, milliseconds for no entry), and one not watched yet (see
# ScanWatches.is_watched).
INLINE_FOLDER_BYTES = 64 * 1024

# Read permission for the owner and for others: a file with both, owned by the
# listing's effective user, is readable without asking (see _Scan._readable).
_OWNER_AND_OTHERS_READ = stat.S_IRUSR | stat.S_IROTH


# The most records a piece of a listing holds (see _Scan): one slice of the reply.
RUN_RECORDS = 512

_Packed = TypeVar("_Packed")


class ListingTooLong(Exception):
    """A listing asked for ``inline`` would take longer than the loop may wait:
    nothing of it is kept; it is to be read again in a worker."""


class _LinkedFolder(Exception):
    """A listing of one folder met a symlink to a folder: only the whole listing
    can tell under which path its files are listed."""


@dataclass(frozen=True, slots=True)
class EncodedListing:
    """A listing's FILES record lines: ``count`` records, in ``pieces`` (in order)."""

    count: int
    pieces: list[bytes]


def _as_they_are(run: list[FileRecord]) -> list[FileRecord]:
    return run


def records_in(records: list[FileRecord], folder: str) -> list[FileRecord]:
    """The part of ``records`` (sorted by path) under ``folder`` (no trailing slash)."""
    # Sorted by path, the files under "docs/" are those from "docs/" up to
    # "docs0" ("0" comes right after "/"); a 1-tuple sorts before its longer kin.
    start = bisect.bisect_left(records, (folder + "/",))
    end = bisect.bisect_left(records, (folder + "0",), lo=start)
    return records[start:end]


@dataclass(slots=True)
class _Folder:
    """A folder being listed: its descriptor, its entries, and its path as listed."""

    fd: int
    entries: Iterator[os.DirEntry[str]]
    prefix: str
    level: int  # components of the listed path to it (0 for the root)
    real_level: int  # folders between the root and where it really is
    steps: int  # steps a request's walk to it takes (more than its level through a symlink)
    # The longest name in it that is sure to be listable when plain (printable
    # ASCII, no backslash): its path fits a request line, its name the name limit.
    room: int
    # Its files since the last folder or linked folder among its entries (in path order).
    run: list[FileRecord] = field(default_factory=list)


class _Scan(Generic[_Packed]):
    """One listing: a depth-first walk with an explicit stack of open folders.

    At most one descriptor per level is open (so at most
    ``MAX_PATH_COMPONENTS``); folders reached through a symlink are scanned
    after every real folder, so a folder also linked from elsewhere is listed
    under its own path whatever order the disk returns names in.

    Each entry costs one ``lstat`` (``DirEntry.stat``): inside a folder the
    scan has reached, only a symlink can lead elsewhere, and symlinks are
    walked from the root as a request would be. A plain name (printable ASCII)
    is checked by the folder's :attr:`_Folder.room`; any other goes through
    the rules requests obey (:meth:`Repository.listable`).

    A folder's entries are taken in path order (a folder's name as if it ended
    in "/"), so its files between two of its folders are a run of the sorted
    listing; each run is handed to ``pack`` as it ends (a few hundred records
    at most) and kept as one piece, so the scan holds few small objects (many
    small objects kept for long would keep the memory they were allocated in,
    spread among others', from going back to the system).

    With a ``budget`` (a listing read on the event loop), it gives up with
    :class:`ListingTooLong` past that many ticks (see :meth:`Repository.reply_records`),
    at the first symlink, whose walk from the root could take long, and at the
    first folder whose read or watch could (:data:`INLINE_FOLDER_BYTES`).
    """

    def __init__(
        self,
        repo: Repository,
        root_fd: int,
        cancelled: Callable[[], bool],
        pack: Callable[[list[FileRecord]], _Packed],
        watches: ScanWatches | None = None,
        budget: int | None = None,
    ) -> None:
        self.repo = repo
        self.watches = watches
        self.root_fd = root_fd
        self.cancelled = cancelled
        self.pack = pack
        self.pieces: list[tuple[str, _Packed]] = []  # (first path, packed run)
        self.count = 0
        self.seen_dirs: set[tuple[int, int]] = set()
        # Symlinked folders, to scan last: (level, prefix), the shallowest (then the
        # first in path order) first, so a folder linked twice is listed under the
        # link nearest the top whatever order the disk gives names in.
        self.linked: list[tuple[int, str]] = []
        self.link_targets: dict[str, os.stat_result | None] = {}  # walked while ordering
        self.stack: list[_Folder] = []
        self.ticks = 0  # entries read and visited, folders entered: for polling ``cancelled``
        self.inline = budget is not None  # on the event loop: nothing that may take long
        self.give_up_at = sys.maxsize if budget is None else budget + 1  # (ticks)
        self.next_check = min(_CANCEL_EVERY, self.give_up_at)
        self.one_folder = False  # listing one folder's subtree: a linked folder needs the whole
        self.euid = os.geteuid()

    def run(self) -> list[_Packed]:
        """The listing's pieces, in path order."""
        try:
            self._push(os.dup(self.root_fd), "", 0, 0, 0)
            self._drain()
            while self.linked:
                self._push_linked(heapq.heappop(self.linked)[1])
                self._drain()
        finally:
            self._close_stack()
        return self._in_order()

    def run_under(self, names: list[str]) -> list[_Packed]:
        """The pieces under the folder ``names`` lead to, if the walk there takes
        real folders only (a symlink on it raises :class:`_LinkedFolder`)."""
        self.one_folder = True
        fd = os.dup(self.root_fd)
        try:
            for level, name in enumerate(names, 1):
                self._tick(FOLDER_TICKS)  # a step down: a stat, an open, the path's rules
                self._watch(fd, self._see(fd))  # a name on the way changing changes the listing
                above, fd = fd, -1  # _step_down closes it, whatever it finds
                fd = self._step_down(above, name, "/".join(names[:level]), level)
                if fd < 0:
                    return []
            below, fd = fd, -1  # the scan's own now, closed by _push if it raises
            self._push(below, "/".join(names) + "/", len(names), len(names), len(names))
            self._drain()
        finally:
            if fd >= 0:
                os.close(fd)
            self._close_stack()
        return self._in_order()

    def _in_order(self) -> list[_Packed]:
        # Runs never overlap: sorted by their first paths, their records are sorted.
        self.pieces.sort(key=_first_path)
        return [packed for _, packed in self.pieces]

    def _see(self, fd: int) -> tuple[int, int]:
        """A folder above the one listed: the whole listing would have seen it already."""
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino)
        self.seen_dirs.add(identity)
        return identity

    def _watch(self, fd: int, identity: tuple[int, int]) -> None:
        """Watch the folder ``fd`` (with watches): on the loop, only if that costs nothing."""
        if self.watches is None:
            return
        if self.inline and not self.watches.is_watched(identity):
            raise ListingTooLong(identity)
        self.watches.add(fd, identity)

    def _step_down(self, fd: int, name: str, path: str, level: int) -> int:
        """The folder ``name`` in ``fd`` (closed), or -1 where the whole listing would not
        enter it; as :meth:`_visit` and :meth:`_enter` decide for a real folder."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            os.close(fd)
            return -1
        if stat.S_ISLNK(st.st_mode):
            os.close(fd)
            raise _LinkedFolder(path)
        if not stat.S_ISDIR(st.st_mode) or not self.repo.listable(path):
            os.close(fd)
            return -1
        if level >= p.MAX_PATH_COMPONENTS:
            os.close(fd)
            return -1
        try:
            below = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            self._cannot_read(path, exc)
            return -1
        finally:
            os.close(fd)
        return below

    def _close_stack(self) -> None:
        for folder in self.stack:
            os.close(folder.fd)
        self.stack.clear()

    def _push(self, fd: int, prefix: str, level: int, real_level: int, steps: int) -> None:
        """Start listing the folder ``fd`` (now owned by the scan) unless it was seen."""
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in self.seen_dirs:
                os.close(fd)
                return  # a symlink loop, or a folder linked twice
            identity = (st.st_dev, st.st_ino)
            self.seen_dirs.add(identity)
            self._tick(FOLDER_TICKS)
            if self.inline and st.st_size > INLINE_FOLDER_BYTES:
                raise ListingTooLong(prefix)
            self._watch(fd, identity)  # before the read: a change after it is heard
            entries = self._read_folder(fd)  # read whole: the folder may change meanwhile
            ordered = self._in_path_order(entries, prefix)
        except (Stopping, ListingTooLong):
            os.close(fd)  # not on the stack yet: run()'s finally would not see it
            raise
        except OSError as exc:
            os.close(fd)
            if self.watches is not None:
                self.watches.spoil()
            shown = prefix.rstrip("/") or "."
            self.repo.report(
                "folder:" + prefix,
                "Cannot read folder %r of the repository: %s",
                shown,
                exc.strerror,
            )
            return
        room = min(p.MAX_NAME_BYTES, self.repo.max_path_bytes - len(prefix.encode("utf-8")))
        self.stack.append(_Folder(fd, iter(ordered), prefix, level, real_level, steps, room))

    def _read_folder(self, fd: int) -> list[os.DirEntry[str]]:
        entries: list[os.DirEntry[str]] = []
        with contextlib.closing(os.scandir(fd)) as scan:  # closed if the stop flag cuts it
            while True:
                # A tick each, counted a batch at a time: a batch is read in one call.
                batch = list(itertools.islice(scan, self.next_check - self.ticks))
                if not batch:
                    return entries
                entries += batch
                self._tick(len(batch))

    def _in_path_order(
        self, entries: list[os.DirEntry[str]], prefix: str
    ) -> list[os.DirEntry[str]]:
        """``entries`` in the order their paths sort in the listing: a folder, or a
        symlink to one, as if its name ended in "/" ("a-b" < "a.txt" < "a/")."""
        keyed = []
        for entry in entries:
            name = entry.name
            try:
                folder = entry.is_dir(follow_symlinks=False) or (
                    entry.is_symlink() and self._links_to_folder(prefix + name)
                )
            except OSError:
                folder = False
            keyed.append((name + "/" if folder else name, entry))
        # No two keys alike (names are unique in a folder): the entries are never compared.
        keyed.sort()
        return [entry for _, entry in keyed]

    def _links_to_folder(self, path: str) -> bool:
        """Whether the symlink ``path`` leads to a folder, walked as a request would be
        (the outcome kept for :meth:`_linked`)."""
        if self.inline:  # a walk of up to MAX_WALK_STEPS: not on the loop
            raise ListingTooLong(path)
        if self.watches is not None:  # its target's folders are not watched
            self.watches.spoil()
        try:
            fd, st, _ = _Walk(self.repo.root, self.root_fd).to(path.split("/"))
        except RequestError:
            self.link_targets[path] = None
            return False
        os.close(fd)
        self.link_targets[path] = st
        return stat.S_ISDIR(st.st_mode)

    def _tick(self, cost: int = 1) -> None:
        """Count an entry (a folder entered: ``FOLDER_TICKS``; see :meth:`_checkpoint`)."""
        self.ticks += cost
        if self.ticks >= self.next_check:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Every so often, give up if the server is stopping (a folder of a million
        names must not hold a shutdown); give up at the budget's end."""
        if self.ticks >= self.give_up_at:
            raise ListingTooLong(self.ticks)
        if self.cancelled():
            raise Stopping("server is shutting down")
        self.next_check = min(self.ticks + _CANCEL_EVERY, self.give_up_at)

    def _push_linked(self, prefix: str) -> None:
        parts = prefix.rstrip("/").split("/")
        walk = _Walk(self.repo.root, self.root_fd)
        try:
            fd, st, names = walk.to(parts)
        except RequestError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.close(fd)
            return
        self._push(fd, prefix, len(parts), len(names), walk.steps)

    def _drain(self) -> None:
        stack = self.stack
        while stack:
            folder = stack[-1]
            if self._visit_entries(folder):
                self._end_run(folder)
                os.close(stack.pop().fd)
            # (else a folder was entered: list it, then come back to this one)

    def _visit_entries(self, folder: _Folder) -> bool:
        """Visit ``folder``'s entries left: True once all are, False once one is a
        folder entered.

        The usual entry, a file of one's own readable by all, with one link and
        a plain name, is listed here; any other goes through :meth:`_visit`.
        (A listing of 100,000 files spends most of its time in this loop: the
        calls and lookups :meth:`_visit` makes cost as much as the ``lstat``.)
        """
        stack = self.stack
        depth = len(stack)
        prefix, room, run = folder.prefix, folder.room, folder.run
        # Where a path could be too long to walk or start with a space, or
        # where "one's own" says nothing of access, every entry goes the long way.
        quick = folder.steps < MAX_WALK_STEPS and prefix[:1] != " " and _EFFECTIVE_IDS
        euid = self.euid
        for entry in folder.entries:
            self.ticks += 1
            if self.ticks >= self.next_check:
                self._checkpoint()
            name = entry.name
            if (
                quick
                and name[0] not in ". "
                and name[-1] != " "
                and len(name) <= room
                and name.isascii()
                and name.isprintable()
                and "\\" not in name
                and not entry.is_dir(follow_symlinks=False)
            ):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                mode = st.st_mode
                if (
                    stat.S_ISREG(mode)
                    and st.st_nlink == 1
                    and st.st_uid == euid
                    and mode & _OWNER_AND_OTHERS_READ == _OWNER_AND_OTHERS_READ
                ):
                    run.append((prefix + name, st.st_size, int(st.st_mtime)))
                    if len(run) >= RUN_RECORDS:
                        self._end_run(folder)
                        run = folder.run
                    continue
            self._visit(folder, entry)
            if len(stack) != depth:
                return False
            run = folder.run  # (a run may have ended)
        return True

    def _end_run(self, folder: _Folder) -> None:
        run = folder.run
        if run:
            self.pieces.append((run[0][0], self.pack(run)))
            self.count += len(run)
            folder.run = []

    def _visit(self, folder: _Folder, entry: os.DirEntry[str]) -> None:
        name = entry.name
        if name.startswith(".") or folder.steps >= MAX_WALK_STEPS:
            return  # hidden, or a request for it would walk too long
        path = folder.prefix + name
        plain = (
            len(name) <= folder.room and name.isascii() and name.isprintable() and "\\" not in name
        )
        if not plain and not self.repo.listable(path):
            return
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return
        mode = st.st_mode
        if entry.is_dir(follow_symlinks=False) != stat.S_ISDIR(mode):
            return  # swapped since the folder was read (and ordered): not listed this time
        if stat.S_ISREG(mode):
            if st.st_nlink > 1 and self.watches is not None:
                # Changed through another of its names, it changes no event here.
                self.watches.spoil()
            # Inline, the usual case: a file of one's own, readable by all, plain name.
            mine = (
                st.st_uid == self.euid and mode & _OWNER_AND_OTHERS_READ == _OWNER_AND_OTHERS_READ
            )
            if not (mine and _EFFECTIVE_IDS) and not self._readable(folder, name):
                return
            if plain and path[0] != " " and name[-1] != " ":
                run = folder.run
                run.append((path, st.st_size, int(st.st_mtime)))
                if len(run) >= RUN_RECORDS:
                    self._end_run(folder)
            else:
                self._add(folder, path, st)
        elif stat.S_ISDIR(mode):
            self._enter(folder, name, path)
        elif stat.S_ISLNK(mode) and entry.is_symlink():
            self._linked(folder, path)

    def _enter(self, folder: _Folder, name: str, path: str) -> None:
        level = folder.level + 1
        if level >= p.MAX_PATH_COMPONENTS or folder.real_level + 1 >= p.MAX_PATH_COMPONENTS:
            self.repo.report(
                "too-deep",
                "Not listing what lies deeper than %d levels (first: %a)",
                p.MAX_PATH_COMPONENTS - 1,
                path,
            )
            return
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=folder.fd)
        except OSError as exc:
            self._cannot_read(path, exc)
            return
        self._end_run(folder)  # its files sort after this folder's
        self._push(fd, path + "/", level, folder.real_level + 1, folder.steps + 1)

    def _cannot_read(self, path: str, exc: OSError) -> None:
        if self.watches is not None:
            self.watches.spoil()
        self.repo.report(
            "folder:" + path + "/",
            "Cannot read folder %r of the repository: %s",
            path,
            exc.strerror,
        )

    def _linked(self, folder: _Folder, path: str) -> None:
        """A symlink: walked from the root, as a request for it would be."""
        if self.watches is not None:  # its target's folders are not watched
            self.watches.spoil()
        if folder.level + 1 > p.MAX_PATH_COMPONENTS:
            return
        if path in self.link_targets:
            st = self.link_targets.pop(path)
        else:  # (an entry whose type the folder did not tell)
            self._links_to_folder(path)
            st = self.link_targets.pop(path)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            if self.one_folder:
                raise _LinkedFolder(path)
            if folder.level + 1 < p.MAX_PATH_COMPONENTS:
                self._end_run(folder)  # its files sort after what the link leads to
                heapq.heappush(self.linked, (folder.level + 1, path + "/"))
        else:
            self._add(folder, path, st)  # it opened for reading, so it is served

    def _readable(self, folder: _Folder, name: str) -> bool:
        """Whether the open a GET does would succeed (effective ids, as open() checks).

        Asked (``faccessat``, ACLs and all) only of a file that is not the
        effective user's own and readable by its owner and by others: for its
        owner, the owner's bits are what the kernel (and a POSIX ACL) checks,
        and a root squashed to "nobody" on NFS reads as others do."""
        try:
            return os.access(name, os.R_OK, dir_fd=folder.fd, effective_ids=_EFFECTIVE_IDS)
        except OSError:
            return False

    def _add(self, folder: _Folder, path: str, st: os.stat_result) -> None:
        # A line's padding would eat a space at either end of the path.
        if (path[0] == " " or path[-1] == " ") and not self.repo.listable_file(path):
            return
        run = folder.run
        run.append((path, st.st_size, int(st.st_mtime)))
        if len(run) >= RUN_RECORDS:
            self._end_run(folder)


def _first_path(item: tuple[str, object]) -> str:
    return item[0]


_EFFECTIVE_IDS = os.access in os.supports_effective_ids


class FileChanged(RequestError):
    """The file changed while it was being read."""

    code = p.ErrorCode.CHANGED


@dataclass(frozen=True, slots=True)
class _Hashed:
    digest: str
    cacheable: bool
    stored: bool = False  # found in the store, not hashed


class HashCache:
    """SHA-256 of repository files, computed in the hashing workers, once.

    Digests are kept per :class:`FileKey` (device, inode, size, mtime, ctime),
    at most ``max_entries`` of them in memory, least recently used dropped
    first, and only for files that had not changed for :data:`RACY_NS` when
    hashed. Each digest computed also goes to ``store`` (on disk, so that it
    survives a restart), which is asked, from a worker thread, before a file
    missing from memory is hashed. Requests for a file that is being hashed
    wait for that one hashing instead of starting another. Each source (a
    client's address) may hold only its share of the hashing workers.

    Its hits, misses (hashings) and bytes hashed are counted in ``stats``, the
    server's statistics when it has one: one number for each, read there.
    """

    def __init__(
        self,
        max_entries: int = MEMORY_DIGESTS,
        *,
        workers: Workers | None = None,
        clock: Callable[[], int] = time.time_ns,
        store: DigestStore | None = None,
        stats: Statistics | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.stats = stats if stats is not None else Statistics()
        # A cache given no workers starts its own threads, and so must stop them.
        self._owns_workers = workers is None
        self.workers = workers if workers is not None else Workers()
        self.clock = clock
        # The store is its opener's to close (a server closes its own).
        self.store: DigestStore = store if store is not None else NoStore()
        # Behind the store: the digests other servers of this repository found (a cluster).
        self.shared: SharedStore | None = None
        self._digests: OrderedDict[FileKey, str] = OrderedDict()
        self._pending: dict[FileKey, asyncio.Future[_Hashed]] = {}

    @property
    def hashings(self) -> int:
        """How many times a file was read and hashed (a miss)."""
        return self.stats.digest_cache_misses

    @property
    def hits(self) -> int:
        """How many digests were answered from the cache (memory or disk)."""
        return self.stats.digest_cache_hits

    def cached(self, key: FileKey) -> str | None:
        digest = self._digests.get(key)
        if digest is not None:
            self._digests.move_to_end(key)
        return digest

    def known(self, key: FileKey) -> str | None:
        """The digest of ``key`` if memory holds it (a hit), else None; never waits.

        The store on disk is not asked here: that takes a worker, and a v2
        ``GET`` does not wait for one before the body (its hashing asks the
        store first, so the digest follows the body at once if it is there)."""
        digest = self.cached(key)
        if digest is not None:
            self.stats.digest_cache_hits += 1
        return digest

    async def sha256(self, opened: OpenedFile, source: str = "") -> str:
        """The SHA-256 hex digest of ``opened``'s first ``opened.size`` bytes.

        Raises :class:`FileChanged` if the file shrank or was rewritten while
        it was hashed (a file that grew is hashed up to its size at open),
        :class:`Stopping` when the workers are closing.
        """
        key = opened.key
        digest = self.cached(key)
        if digest is not None:
            self.stats.digest_cache_hits += 1
            return digest
        # shield: one waiter giving up must not cancel the others' hashing.
        hashed = await asyncio.shield(self.hashing(opened, source))
        return hashed.digest

    def hashing(self, opened: OpenedFile, source: str = "") -> asyncio.Future[_Hashed]:
        """The hashing of ``opened`` in progress, or a new one: it runs to its
        end (and its digest is cached) whoever waits for it, or none. Await it
        through ``asyncio.shield``: one waiter giving up must not stop it."""
        key = opened.key
        pending = self._pending.get(key)
        if pending is None and key.size <= INLINE_HASH_BYTES:
            return self._hash_here(opened)
        if pending is None:
            # The hashing thread gets its own descriptor, taken now: the session
            # may close its own (a client leaving) before the hashing starts.
            fd = os.dup(opened.fd)
            pending = asyncio.ensure_future(self._digest(fd, key, source))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._store(key, done))
        return pending

    def _hash_here(self, opened: OpenedFile) -> asyncio.Future[_Hashed]:
        """A small file hashed now, on the loop (see INLINE_HASH_BYTES): kept in
        memory, never asked of nor given to the store, which is for files whose
        hashing costs more than a look-up."""
        key = opened.key
        done: asyncio.Future[_Hashed] = asyncio.get_running_loop().create_future()
        self.stats.digest_cache_misses += 1
        started = self.clock()
        try:
            hashed = hash_opened(opened.fd, key, _never, at_once=True)
        except (OSError, RequestError) as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: a send cut short never waits for it
            return done
        self.stats.bytes_hashed += key.size
        if started - key.changed_at() < RACY_NS:
            hashed = _Hashed(hashed.digest, cacheable=False)
        if hashed.cacheable:
            self._keep(key, hashed.digest)
        done.set_result(hashed)
        return done

    async def _digest(self, fd: int, key: FileKey, source: str) -> _Hashed:
        """The digest found for ``key`` (see _look_up), else a hashing; ``fd`` is closed."""
        try:
            found = await self._look_up(key)
        except BaseException:
            os.close(fd)
            raise
        if found is not None:
            os.close(fd)
            self.stats.digest_cache_hits += 1
            return _Hashed(found, cacheable=True)
        shared = self.shared
        asks_store = not isinstance(self.store, NoStore) and not self._store_first(key)
        # A small file is looked up in the job that would hash it: one thread hop, not two.
        stats = self.stats
        try:
            hashed = await self._hash(fd, key, source, asks_store)
        except BaseException:
            stats.digest_cache_misses += 1
            raise
        if hashed.stored:
            stats.digest_cache_hits += 1
        else:
            stats.digest_cache_misses += 1
            stats.bytes_hashed += key.size
        if shared is not None and hashed.cacheable:  # (the racy rule: as for the store)
            shared.put(key.row(), hashed.digest)
        return hashed

    def _store_first(self, key: FileKey) -> bool:
        """Whether the store is asked in a job of its own, before a hashing is queued:
        for a large file, and before the shared level is asked (a cluster)."""
        return key.size > SMALL_FILE_BYTES or self.shared is not None

    async def _look_up(self, key: FileKey) -> str | None:
        """The digest of ``key`` found without hashing: the store's, then the other
        servers' (the shared level of a cluster); ``None`` if neither has it."""
        shared = self.shared
        if not isinstance(self.store, NoStore) and self._store_first(key):
            # In a metadata worker: a large hashing queued ahead cannot delay it.
            stored = await self.workers.metadata.run(self._ask_store, key.row())
            if stored is not None:
                if shared is not None:
                    shared.put(key.row(), stored)  # another server may not have it yet
                return stored
        return None if shared is None else await shared.get(key.row())

    def _ask_store(self, row: Key) -> str | None:
        digest = self.store.get(row)
        self._flush_if_quiet()
        return digest

    def _flush_if_quiet(self) -> None:
        """Commit the store's batch once no other digest is being found (in a worker:
        reading the length of a dict another thread changes is safe)."""
        if len(self._pending) <= 1:
            self.store.flush()

    async def _hash(self, fd: int, key: FileKey, source: str, asks_store: bool) -> _Hashed:
        started: int | None = None
        try:
            async with self._share_for(key, source):
                started = self.clock()
                # The thread closes the descriptor itself, as it may still read
                # it after this coroutine is gone (a loop shutting down); if
                # the job never runs, the pool closes it.
                return await self._pool_for(key).run(
                    self._hash_and_keep,
                    fd,
                    key,
                    started,
                    asks_store,
                    never_ran=lambda: os.close(fd),
                )
        except BaseException:
            if started is None:  # still waiting for a slot: the fd is ours
                os.close(fd)
            raise

    def _hash_and_keep(self, fd: int, key: FileKey, started: int, asks_store: bool) -> _Hashed:
        """In a worker: the store's digest (if asked and it has one), or hash ``fd``
        and give the store a digest it may keep. Closes ``fd``."""
        try:
            stored = self._ask_store(key.row()) if asks_store else None
            if stored is not None:
                return _Hashed(stored, cacheable=True, stored=True)
            hashed = hash_opened(fd, key, self.workers.cancel.is_set)
        finally:
            os.close(fd)
        racy = started - key.changed_at() < RACY_NS
        if racy or not hashed.cacheable:
            return _Hashed(hashed.digest, cacheable=False)
        self.store.put(key.row(), hashed.digest)
        self._flush_if_quiet()
        return hashed

    def _share_for(self, key: FileKey, source: str) -> contextlib.AbstractAsyncContextManager[None]:
        """A file waits for its source's share of the pool it is hashed in: large
        and small files have shares of their own, so one client's large files
        never hold back a small one of another client of the same source (every
        local client is one source)."""
        if key.size <= SMALL_FILE_BYTES:
            return self.workers.small_hash_share.slot(source)
        return self.workers.hash_share.slot(source)

    def _pool_for(self, key: FileKey) -> WorkerPool:
        """A small file is hashed in a metadata worker, in a millisecond or two:
        large hashings from many sources queued ahead cannot make it wait."""
        if key.size <= SMALL_FILE_BYTES:
            return self.workers.metadata
        return self.workers.hashing

    def _store(self, key: FileKey, done: asyncio.Future[_Hashed]) -> None:
        del self._pending[key]
        if done.cancelled() or done.exception() is not None or not done.result().cacheable:
            return
        self._keep(key, done.result().digest)

    def learned(self, key: FileKey, digest: str) -> None:
        """Keep the digest of a file whose every byte the server hashed as it
        wrote it (an upload, just placed): its first download is warm. Kept in
        memory even when racy, as nothing but the server wrote it within the
        racy window (the store, which outlives a restart, does not get it)."""
        self._keep(key, digest)

    def _keep(self, key: FileKey, digest: str) -> None:
        self._digests[key] = digest
        while len(self._digests) > self.max_entries:
            self._digests.popitem(last=False)

    async def settled(self) -> None:
        """Wait for the hashings in progress to end (once the hashing is stopped, each
        gives up at its next block): none ends after the loop, with nobody left to
        read how it ended."""
        if self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)

    def close(self) -> None:
        """Stop the hashing threads this cache started; workers it was given are their
        owner's to close (a server closes its own)."""
        if self._owns_workers:
            self.workers.close()

    def __len__(self) -> int:
        return len(self._digests)


def hash_opened(
    fd: int, key: FileKey, cancelled: Callable[[], bool], *, at_once: bool = False
) -> _Hashed:
    """Hash ``fd``'s first ``key.size`` bytes and say whether the digest may be cached.

    A file that grew meanwhile gives the digest of its prefix, not cached
    (its key changed); one that shrank or was rewritten is :class:`FileChanged`.
    ``at_once``: a small file, read in one go (on the loop).
    """
    digest = _hash_at_once(fd, key) if at_once else hash_fd(fd, key, cancelled)
    now = FileKey.of(os.fstat(fd))
    if now == key:
        return _Hashed(digest, cacheable=True)
    if now.size > key.size:
        return _Hashed(digest, cacheable=False)
    raise FileChanged("the file changed while it was read; try again")


def hash_fd(fd: int, key: FileKey, cancelled: Callable[[], bool] = lambda: False) -> str:
    """SHA-256 of the first ``key.size`` bytes of ``fd``.

    Raises :class:`FileChanged` if the file ends before that, and
    :class:`Stopping` as soon as ``cancelled()`` (polled per block) is true.
    """
    if key.size <= SMALL_FILE_BYTES:
        # One read: a 1 MiB mapping made and unmapped for it cost more than
        # hashing a small file.
        if cancelled():
            raise Stopping("server is shutting down")
        return _hash_at_once(fd, key)
    digest = hashlib.sha256()
    # Page-aligned (an anonymous mapping): malloc puts a fresh large block 16
    # bytes past a page boundary, and the kernel copies into that 2-4 times slower.
    view = memoryview(mmap.mmap(-1, _HASH_CHUNK, flags=mmap.MAP_PRIVATE))
    offset = 0
    while offset < key.size:
        if cancelled():
            raise Stopping("server is shutting down")
        count = os.preadv(fd, [view[: min(_HASH_CHUNK, key.size - offset)]], offset)
        if count == 0:
            raise FileChanged("the file shrank while it was read; try again")
        digest.update(view[:count])
        offset += count
    return digest.hexdigest()


def _hash_at_once(fd: int, key: FileKey) -> str:
    """SHA-256 of the first ``key.size`` bytes of ``fd``, read in one ``pread``."""
    data = os.pread(fd, key.size, 0)
    if len(data) < key.size:
        raise FileChanged("the file shrank while it was read; try again")
    return hashlib.sha256(data).hexdigest()


def _never() -> bool:
    return False
