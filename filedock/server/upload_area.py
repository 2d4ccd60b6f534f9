"""Where uploads live until they are placed, and how they are placed.

A hidden folder on the repository's file system holds each upload's partial
file, named after its size, SHA-256 and path, so an interrupted upload of
the same file finds its bytes again (``READY <offset>``). The destination is
checked before any byte comes and walked again when the file is placed:
never through a symbolic link, its missing folders made inside the root only.
A whole, checked partial is synced, then linked under its name (mode ``new``:
the link fails cleanly if the name was taken meanwhile) or renamed over it
(``replace``), then its folder is synced: no reader ever sees half a file.

Everything here blocks: the server runs it in its upload workers.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass

from .. import protocol as p
from ..errors import Exists, Forbidden, NoSpace
from .repository import FileKey, check_client_path

log = logging.getLogger("filedock.server")

# Inside the state folder when it is on the repository's file system (the
# default, .filedock in the repository); else this hidden folder of the root.
# A dot-name either way: never listed, never served, refused as a PUT path.
STATE_UPLOADS = "uploads"
ROOT_UPLOADS = ".filedock-uploads"
PARTIAL_SUFFIX = ".part"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PARTIAL_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# A resumed partial's bytes are hashed again this much at a time.
_HASH_CHUNK = 1024 * 1024

RootOpener = Callable[[], AbstractContextManager[int]]


def partial_name(size: int, sha256: str, path: str) -> str:
    """The partial's file name: one per (size, SHA-256, path), so a resume finds it."""
    what = f"{size} {sha256} {path}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(what).hexdigest()[:40] + PARTIAL_SUFFIX


@dataclass(slots=True)
class Prepared:
    """An upload the destination and the size allow: its partial is open at ``offset``."""

    name: str
    fd: int
    offset: int
    free: int  # bytes of its file system free now (to the unprivileged)
    total: int  # bytes of its file system in all


class Partial:
    """An upload's partial file, written in order and hashed as it is written."""

    __slots__ = ("area", "name", "fd", "offset", "_digest")

    def __init__(self, area: UploadArea, prepared: Prepared) -> None:
        self.area = area
        self.name = prepared.name
        self.fd = prepared.fd
        self.offset = prepared.offset
        self._digest = hashlib.sha256()

    def hash_held(self) -> None:
        """Hash the bytes a resumed partial already holds (the digest goes on from them)."""
        view = memoryview(mmap.mmap(-1, _HASH_CHUNK, flags=mmap.MAP_PRIVATE))
        done = 0
        while done < self.offset:
            count = os.preadv(self.fd, [view[: min(_HASH_CHUNK, self.offset - done)]], done)
            if count == 0:  # shortened behind our back: go on from what is there
                os.ftruncate(self.fd, done)
                self.offset = done
                break
            self._digest.update(view[:count])
            done += count

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``, hashed. Raises :class:`NoSpace` when the disk is full."""
        self.hash(data)
        self.store(data)

    def hash(self, data: bytes | bytearray | memoryview) -> None:
        """Take ``data`` into the digest (in order; beside :meth:`store` of the same bytes)."""
        self._digest.update(data)

    def store(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` after what is written. Raises :class:`NoSpace` when the disk is full."""
        view = memoryview(data)
        while view:
            try:
                count = os.pwrite(self.fd, view, self.offset)
            except OSError as exc:
                if exc.errno in _NO_SPACE_ERRNOS:
                    raise NoSpace("the server's disk filled during the upload") from None
                raise
            self.offset += count
            view = view[count:]

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def keep(self) -> None:
        """Close it, its bytes kept for a resume."""
        self._close()

    def discard(self) -> None:
        """Close and remove it."""
        self._close()
        with suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.area.fd)

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class UploadArea:
    """The uploads folder of one repository, and the space uploads have reserved.

    ``open_root`` gives a descriptor of the repository's root (the caller
    closes it), as :meth:`Repository.open_root` does.
    """

    def __init__(
        self,
        repo_root: str,
        state_folder: str,
        open_root: RootOpener,
        *,
        expiry: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        device = os.stat(repo_root).st_dev
        try:
            in_state = os.stat(state_folder).st_dev == device
        except OSError:
            in_state = False
        # Same file system as the destinations: a link or a rename, never a copy.
        self.folder = (
            os.path.join(state_folder, STATE_UPLOADS)
            if in_state
            else os.path.join(repo_root, ROOT_UPLOADS)
        )
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        self.fd = os.open(self.folder, _DIR_FLAGS)
        self.device = os.fstat(self.fd).st_dev
        # The server's own folders, never written into by an upload (a state
        # folder given a served name would otherwise let a client replace the
        # digest cache, or another upload's partial).
        self.own_folders = {_identity(os.stat(self.folder))}
        if in_state:
            self.own_folders.add(_identity(os.stat(state_folder)))
        self.open_root = open_root
        self.expiry = expiry
        self.clock = clock
        self.reserved = 0  # bytes promised to accepted uploads (on the loop only)
        self.active: set[str] = set()  # partials being written (on the loop only)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- at start-up ------------------------------------------------------------

    def remove_expired(self) -> int:
        """Remove the partials older than the expiry; how many were removed."""
        oldest = self.clock() - self.expiry
        removed = 0
        with os.scandir(self.fd) as entries:
            for entry in entries:
                if not entry.name.endswith(PARTIAL_SUFFIX):
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < oldest:
                        os.unlink(entry.name, dir_fd=self.fd)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # -- before the body -----------------------------------------------------------

    def prepare(self, put: p.Put, name: str) -> Prepared:
        """Check ``put``'s destination, and open its partial ``name`` (what it
        holds of an earlier try kept, unless expired or too long).

        Raises :class:`Forbidden` for a path the repository would not serve or
        create, :class:`Exists` for mode ``new`` and a path that exists.
        """
        self.check_destination(put.path, put.mode)
        fd = os.open(name, _PARTIAL_FLAGS, 0o644, dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            offset = st.st_size
            if offset > put.size or st.st_mtime < self.clock() - self.expiry:
                os.ftruncate(fd, 0)
                offset = 0
            fs = os.fstatvfs(self.fd)
        except BaseException:
            os.close(fd)
            raise
        return Prepared(name, fd, offset, fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize)

    def check_destination(self, path: str, mode: p.PutMode) -> None:
        """Refuse ``path`` before any byte: not a path the repository serves, a
        symlink or a file on the way, a folder or a symlink in its place, another
        file system; or, for mode ``new``, a file there already."""
        check_client_path(path)
        *folders, last = path.split("/")
        with self.open_root() as root_fd, _FolderWalk(root_fd, self.own_folders) as walk:
            for folder in folders:
                if not walk.enter(folder, make=False):
                    return self._check_device(walk.fd)  # the rest is made at the end
            self._check_device(walk.fd)
            try:
                st = os.stat(last, dir_fd=walk.fd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            except OSError:
                raise Forbidden("the path cannot be written") from None
        _check_placeable(st)
        if mode is p.PutMode.NEW:
            raise Exists("a file of that name exists")
        return None

    def _check_device(self, folder_fd: int) -> None:
        if os.fstat(folder_fd).st_dev != self.device:
            raise Forbidden("that folder is on another file system than the uploads")

    # -- at the end ---------------------------------------------------------------------

    def place(self, partial: Partial, path: str, mode: p.PutMode) -> FileKey:
        """Sync the whole, checked ``partial`` and put it under ``path``; its key.

        Raises :class:`Exists` (mode ``new``: the name was taken meanwhile, the
        partial is removed), :class:`Forbidden` (the path can no longer be
        written: the partial is kept), :class:`NoSpace`.
        """
        *folders, last = path.split("/")
        try:
            os.fsync(partial.fd)
            with self.open_root() as root_fd, _FolderWalk(root_fd, self.own_folders) as walk:
                for folder in folders:
                    walk.enter(folder, make=True)
                self._check_device(walk.fd)
                if mode is p.PutMode.NEW:
                    self._link(partial, last, walk.fd)
                else:
                    self._rename(partial, last, walk.fd)
                os.fsync(walk.fd)  # the new name is durable
            key = FileKey.of(os.fstat(partial.fd))  # after the last link count change
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                raise NoSpace("the server's disk is full") from None
            raise Forbidden("the path cannot be written") from None
        partial.keep()  # (its name is gone: nothing is kept)
        return key

    def _link(self, partial: Partial, last: str, folder_fd: int) -> None:
        try:
            os.link(partial.name, last, src_dir_fd=self.fd, dst_dir_fd=folder_fd,
                    follow_symlinks=False)  # fmt: skip
        except FileExistsError:
            partial.discard()
            raise Exists("another upload placed a file of that name first") from None
        os.unlink(partial.name, dir_fd=self.fd)

    def _rename(self, partial: Partial, last: str, folder_fd: int) -> None:
        with suppress(FileNotFoundError):
            _check_placeable(os.stat(last, dir_fd=folder_fd, follow_symlinks=False))
        os.rename(partial.name, last, src_dir_fd=self.fd, dst_dir_fd=folder_fd)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _check_placeable(st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise Forbidden("uploads are not written through a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise Forbidden("not a regular file")


class _FolderWalk:
    """A walk down from the root that follows no symlink, making folders if asked."""

    __slots__ = ("fd", "_opened", "_refused")

    def __init__(self, root_fd: int, refused: set[tuple[int, int]]) -> None:
        self.fd = root_fd
        self._opened: list[int] = []
        self._refused = refused  # folders never entered: the server's own

    def __enter__(self) -> _FolderWalk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fd in self._opened:
            os.close(fd)

    def enter(self, name: str, *, make: bool) -> bool:
        """Go into the folder ``name``; False if it does not exist (and not ``make``)."""
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            if not make:
                return False
            with suppress(FileExistsError):  # made meanwhile: opened below, following nothing
                os.mkdir(name, dir_fd=self.fd)
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            raise Forbidden("the path cannot be written") from None
        if stat.S_ISLNK(st.st_mode):
            raise Forbidden("uploads are not written through a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise Forbidden("a name on the path is a file, not a folder")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError:  # swapped for a symlink since the stat (ELOOP), or gone
            raise Forbidden("the path cannot be written") from None
        self._opened.append(fd)
        if _identity(os.fstat(fd)) in self._refused:  # before anything is made inside
            raise Forbidden("that folder is the server's own")
        self.fd = fd
        return True


def iter_partials(area: UploadArea) -> Iterator[str]:
    """The names of the partials the area holds (for tests and tools)."""
    with os.scandir(area.fd) as entries:
        yield from sorted(e.name for e in entries if e.name.endswith(PARTIAL_SUFFIX))
