"""Listings kept encoded between requests, dropped when the kernel says a folder changed.

A folder's mtime does not move when a file in it is appended to or chmodded,
so no stat of the folders can tell that a cached listing is still right.
inotify can: every folder a scan reads is watched (the watch added before
the folder is read, so nothing done after the read goes unseen), and any
event for one of them (a file in it created, written, closed after writing,
chmodded, touched, deleted or moved; the folder itself deleted or moved)
drops every cached listing that read it. The kernel queues an event before
the syscall that caused it returns, and each ``LIST`` reads the queue before
it looks here, so a change made before a request is seen by that request.

Kept only where inotify sees every change: Linux, a repository on a local
file system (:data:`TRUSTED_FILE_SYSTEMS`: on NFS, CIFS or FUSE another host
or daemon changes files behind the kernel's back; an overlay's lower layers
can change unseen), and a listing that met no symlink, no unreadable folder
and no file with another name (a hard link written through that name tells
only its own folder). Blind still: a write through a shared mapping whose
file was closed moves the mtime with no event.

Bounded: at most ``max_records`` records, ``max_watches`` folders watched (a
listing of empty folders holds watches, not records) and ``max_listings``
listings, least recently used listing dropped first; a folder is watched
only while a kept listing read it (or it is the root); with the kernel's
watches exhausted (``ENOSPC``) the cache turns itself off.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .repository import EncodedListing

log = logging.getLogger("filedock.server")

# <linux/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# No IN_DONT_FOLLOW: a folder is watched through /proc/self/fd/N, the very
# folder the scan opened (no path walked again), and that magic link must be followed.
WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_MOVE_SELF
    | IN_ONLYDIR
)

# File systems whose every change goes through this kernel, so inotify reports it.
TRUSTED_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "f2fs", "jfs", "bcachefs"}
)

MAX_RECORDS = 200_000  # records cached at most (some 50 bytes each, encoded)
# Folders watched at most: the kernel's budget (max_user_watches, 8,192 on
# older kernels) is shared by all of the user's processes.
MAX_WATCHES = 50_000
# Listings kept at most: those of missing or empty folders hold no record and
# no watch of their own, and one change at the root drops them all at once
# (50,000 took the loop 92 ms).
MAX_LISTINGS = 4_096

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
_READ_BYTES = 64 * 1024


class Inotify(Protocol):
    """The three calls the cache makes (a seam: tests put a fake in)."""

    fd: int

    def add_watch(self, path: str, mask: int) -> int: ...
    def rm_watch(self, wd: int) -> None: ...
    def close(self) -> None: ...


class LibcInotify:
    """inotify through libc (ctypes): the standard library has no binding."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm.restype = ctypes.c_int
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.fd: int = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd: int = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return wd

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL if the kernel dropped it already: nothing to do

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def mount_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The file system type of the mount ``path`` lies on, or None if unknown.

    Matched by device number (``major:minor``, field 3), the last such line
    winning (a mount over another); else by the longest mount point above ``path``.
    """
    try:
        dev = os.stat(path).st_dev
        with open(mountinfo, encoding="utf-8", errors="replace") as lines:
            rows = [line.split() for line in lines]
    except OSError:
        return None
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    found: str | None = None
    best_point, best_type = "", None
    for row in rows:
        try:
            fs_type = row[row.index("-", 6) + 1]
        except (ValueError, IndexError):
            continue
        if row[2] == wanted:
            found = fs_type
        point = row[4].replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(
            best_point
        ):
            best_point, best_type = point, fs_type
    return found if found is not None else best_type


Identity = tuple[int, int]  # a folder's (st_dev, st_ino)


@dataclass(eq=False)
class ScanWatches:
    """The folders one scan read (watched before reading), used where the scan runs
    (on the loop for a small listing, else in a metadata worker).

    ``spoil()`` marks a listing that must not be kept: it met what inotify on
    its folders would not see change (a symlink, a folder it could not read).
    """

    inotify: Inotify
    started: int  # the cache's event count when the scan began
    # The folders the cache's kept listings watch: read on the loop only.
    watched: Mapping[Identity, int] = field(default_factory=dict)
    wds: dict[int, Identity] = field(default_factory=dict)  # the scan's watches
    spoiled: bool = False
    out_of_watches: bool = False

    def add(self, folder_fd: int, identity: Identity) -> None:
        if self.spoiled:
            return
        try:
            wd = self.inotify.add_watch(f"/proc/self/fd/{folder_fd}", WATCH_MASK)
        except OSError as exc:
            self.spoiled = True
            self.out_of_watches = exc.errno == errno.ENOSPC
            return
        self.wds[wd] = identity

    def is_watched(self, identity: Identity) -> bool:
        """Whether the folder is watched already, so that watching it costs the
        kernel nothing: a first watch visits every entry the kernel holds for the
        folder, names looked up and not found included (milliseconds for some)."""
        return identity in self.watched

    def spoil(self) -> None:
        self.spoiled = True


@dataclass(frozen=True, slots=True)
class _Entry:
    count: int
    pieces: tuple[bytes, ...]
    wds: frozenset[int]
    root: tuple[int, int]


Key = str | None  # the LIST request's folder, None for the whole listing


class ListingCache:
    """Encoded listings by request folder, on the event loop (see the module's text)."""

    def __init__(
        self,
        root: str,
        inotify: Inotify,
        *,
        max_records: int = MAX_RECORDS,
        max_watches: int = MAX_WATCHES,
        max_listings: int = MAX_LISTINGS,
    ) -> None:
        self.root = root
        self.max_records = max_records
        self.max_watches = max_watches
        self.max_listings = max_listings
        self._inotify: Inotify | None = inotify
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._by_wd: dict[int, set[Key]] = {}
        self._watched: dict[Identity, int] = {}  # the folders of _by_wd (and the root)
        self._identity_of: dict[int, Identity] = {}
        self._records = 0
        self._events = 0  # events read so far: a scan's listing is kept only if none hit it
        self._last_event: dict[int, int] = {}  # wd -> number of its last event
        self._overflowed = -1  # number of the last overflow
        self._scans = 0  # scans under way (the two maps above are cleared when none)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pinned: int | None = None  # the root's watch, kept for as long as the cache
        self.hits = 0
        self.misses = 0

    @classmethod
    def open(
        cls,
        root: str,
        *,
        max_records: int = MAX_RECORDS,
        fs_type: Callable[[str], str | None] = mount_type,
        inotify: Callable[[], Inotify] = LibcInotify,
    ) -> ListingCache | None:
        """A cache for the repository at ``root`` (a real path), or None where it
        could not be trusted (not Linux, not a local file system, no inotify)."""
        if not sys.platform.startswith("linux"):
            return None
        kind = fs_type(root)
        if kind not in TRUSTED_FILE_SYSTEMS:
            log.info("Listings are not cached: the repository is on %s", kind or "an unknown mount")
            return None
        try:
            watcher = inotify()
        except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
            log.info("Listings are not cached: inotify is not available (%s)", exc)
            return None
        cache = cls(root, watcher, max_records=max_records)
        cache.pin_root()
        return cache

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def pin_root(self) -> None:
        """Watch the root folder from now on, whether a kept listing needs it or not.

        The kernel's first watch on a folder marks every entry of it it holds
        (4 ms for a root of 1,000 folders): paid here, at the start, and not
        again by the first listing nor after each time no listing is kept.
        """
        if self._inotify is None:
            return
        try:
            st = os.stat(self.root)
            self._pinned = self._inotify.add_watch(self.root, WATCH_MASK)
        except OSError:
            self._pinned = None  # the scans' own watches are all the cache needs
            return
        self._note_watch(self._pinned, (st.st_dev, st.st_ino))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read events as they come, on ``loop`` (each LIST also reads first: :meth:`drain`)."""
        if self._inotify is not None:
            self._loop = loop
            loop.add_reader(self._inotify.fd, self.drain)

    def close(self) -> None:
        if self._inotify is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._inotify.fd)
        self._inotify.close()
        self._inotify = None
        self._forget_all()

    def __len__(self) -> int:
        return self._records

    # -- a LIST ----------------------------------------------------------------

    def lookup(self, key: Key) -> EncodedListing | None:
        """The listing kept for ``key``, every change queued so far applied first."""
        if self._inotify is None:
            return None
        self.drain()
        entry = self._entries.get(key)
        if entry is None or entry.root != self._root_identity():
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return EncodedListing(entry.count, list(entry.pieces))  # the reply empties its list

    def begin(self) -> ScanWatches | None:
        """The watches for a scan about to start (None with the cache off)."""
        if self._inotify is None:
            return None
        self._scans += 1
        return ScanWatches(self._inotify, self._events, self._watched)

    def end(self, key: Key, watches: ScanWatches, listing: EncodedListing | None) -> None:
        """A scan is over: keep ``listing`` (None if it failed) unless something it
        read changed since it began."""
        self._scans -= 1
        try:
            if self._inotify is None or listing is None:
                return
            if watches.out_of_watches:
                log.warning("Listings are no longer cached: out of inotify watches")
                self.close()
                return
            self.drain()
            if watches.spoiled or not self._unchanged_since(watches):
                return
            if listing.count > self.max_records or len(watches.wds) > self.max_watches:
                return
            self._keep(key, listing, watches.wds)
        finally:
            self._unwatch_unused(watches)
            if self._scans == 0:  # no scan left to compare: the event numbers can go
                self._last_event.clear()

    def _unwatch_unused(self, watches: ScanWatches) -> None:
        # A listing not kept (a symlink met, a change, a failure) leaves its
        # watches to no one: let the kernel forget them, or they add up.
        if self._inotify is None:
            return
        for wd in watches.wds:
            if wd not in self._by_wd and wd != self._pinned:
                self._unwatch(wd)

    def _unchanged_since(self, watches: ScanWatches) -> bool:
        # Events are numbered from 1; the scan began after event number ``started``.
        if self._overflowed > watches.started:
            return False
        last = self._last_event
        return all(last.get(wd, 0) <= watches.started for wd in watches.wds)

    def _keep(self, key: Key, listing: EncodedListing, wds: Mapping[int, Identity]) -> None:
        root = self._root_identity()
        if root is None:
            return
        self._drop(key)
        entry = self._entries[key] = _Entry(
            listing.count, tuple(listing.pieces), frozenset(wds), root
        )
        self._records += entry.count
        for wd, identity in wds.items():
            self._by_wd.setdefault(wd, set()).add(key)
            self._note_watch(wd, identity)
        while (
            self._records > self.max_records
            or len(self._by_wd) > self.max_watches
            or len(self._entries) > self.max_listings
        ):
            self._drop(next(iter(self._entries)))

    def _note_watch(self, wd: int, identity: Identity) -> None:
        old = self._identity_of.get(wd)
        if old is not None and self._watched.get(old) == wd:
            del self._watched[old]  # (the kernel reuses a number once it is freed)
        self._identity_of[wd] = identity
        self._watched[identity] = wd

    def _root_identity(self) -> Identity | None:
        # A folder above the root renamed tells the root's watch nothing: one stat does.
        try:
            st = os.stat(self.root)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    # -- events ------------------------------------------------------------------

    def drain(self) -> None:
        """Read every queued event (never blocking) and drop what they touch."""
        if self._inotify is None:
            return
        fd = self._inotify.fd
        while True:
            try:
                data = os.read(fd, _READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("Listings are no longer cached: %s", exc)
                self.close()
                return
            if not data:
                return
            for wd, mask in _events(data):
                self._event(wd, mask)

    def _event(self, wd: int, mask: int) -> None:
        self._events += 1
        if mask & IN_Q_OVERFLOW:
            self._overflowed = self._events
            self._forget_all()
            return
        self._last_event[wd] = self._events
        for key in list(self._by_wd.get(wd, ())):
            self._drop(key)

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._records -= entry.count
        for wd in entry.wds:
            keys = self._by_wd.get(wd)
            if keys is None:
                continue
            keys.discard(key)
            if not keys:  # watched for no listing now: let the kernel forget it
                del self._by_wd[wd]
                if wd != self._pinned:
                    self._unwatch(wd)

    def _unwatch(self, wd: int) -> None:
        # A scan under way may have added this same watch (one per folder): its
        # listing must not be kept on a watch that is gone.
        self._events += 1
        self._last_event[wd] = self._events
        identity = self._identity_of.pop(wd, None)
        if identity is not None and self._watched.get(identity) == wd:
            del self._watched[identity]
        if self._inotify is not None:
            self._inotify.rm_watch(wd)

    def _forget_all(self) -> None:
        for key in list(self._entries):
            self._drop(key)


def _events(data: bytes) -> Iterator[tuple[int, int]]:
    """(wd, mask) of each ``struct inotify_event`` in ``data``."""
    at, end, size = 0, len(data), _EVENT.size
    while at + size <= end:
        wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
        at += size + length
        yield wd, mask
