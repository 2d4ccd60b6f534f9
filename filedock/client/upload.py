"""What an upload reads: the local file as it was hashed, and the files of a folder.

A :class:`LocalSource` is a local file opened once: its ``fstat`` when it
was opened, its SHA-256 (from the local digest cache, or hashed from that
very descriptor), and its last byte. The body is sent from the descriptor,
so a file renamed or replaced meanwhile still sends the bytes hashed; one
written to meanwhile is caught by :meth:`LocalSource.unchanged` before its
last byte goes (see :meth:`LocalSource.last_byte`).

:func:`tree_files` lists what a folder upload sends; :func:`remote_join`
makes the server paths.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..digests import Key
from ..errors import BadRequest, Changed, FiledockError
from .localdigests import LocalDigests, key_of


class UnreadableFile(FiledockError):
    """A local file to upload could not be opened or read (missing, not a
    regular file, no permission). Nothing was sent for it."""


# What a server path cannot hold on the client's side (the server refuses the
# rest itself, before any byte of the body: hidden names, `..`, a symlink).
_UNSENDABLE = ("\n", "\r", "\x00")


def check_remote_path(path: str) -> str:
    """``path`` if it can be asked for in a PUT line; BadRequest otherwise (nothing is sent)."""
    if not isinstance(path, str):
        raise TypeError(f"a server path is a str, not {type(path).__name__}")
    if not path or path.startswith("/") or path.endswith("/"):
        raise BadRequest(f"not a file path on the server: {path!r}")
    if any(char in path for char in _UNSENDABLE):
        raise BadRequest(f"a server path cannot hold a line break or NUL: {path!r}")
    return path


def check_remote_folder(folder: str | None) -> str | None:
    """``folder`` if files can be sent under it ("" or None: the top); BadRequest if not."""
    if folder is not None and not isinstance(folder, str):
        raise TypeError(f"a server folder is a str, not {type(folder).__name__}")
    if folder and any(char in folder for char in _UNSENDABLE):
        raise BadRequest(f"a server path cannot hold a line break or NUL: {folder!r}")
    return folder


def remote_join(folder: str | None, *names: str) -> str:
    """The server path of ``names`` under ``folder`` ("" or None: the top)."""
    parts = [folder.strip("/")] if folder and folder.strip("/") else []
    parts.extend(name.strip("/") for name in names if name.strip("/"))
    return "/".join(parts)


@dataclass(eq=False)
class LocalSource:
    """A local file open for an upload (see the module's docstring); close it after."""

    path: Path
    fd: int
    stat: os.stat_result
    sha256: str
    _last: bytes  # the file's last byte as hashed (b"" for an empty file)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        digests: LocalDigests,
        known: tuple[Key, str] | None = None,
    ) -> LocalSource:
        """Open and hash ``path`` (a symlink is followed); ``known`` is a digest
        found earlier, with the key of the file it was of. Raises
        :class:`UnreadableFile`, and :class:`Changed` when it changed while it
        was hashed."""
        local = Path(path)
        try:
            fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise UnreadableFile(f"cannot read {local}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnreadableFile(f"{local} is not a regular file")
            if known is not None and known[0] == key_of(st):
                digest: str | None = known[1]
            else:
                digest = digests.digest_of_fd(fd, st)
            if digest is None:
                raise Changed(f"{local} changed while it was hashed: nothing was sent")
            last = os.pread(fd, 1, st.st_size - 1) if st.st_size else b""
        except OSError as exc:
            os.close(fd)
            raise UnreadableFile(f"cannot read {local}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        return cls(local, fd, st, digest, last)

    @property
    def size(self) -> int:
        return self.stat.st_size

    def unchanged(self) -> bool:
        """Whether the file is still as it was hashed (size, mtime, ctime, inode)."""
        try:
            return key_of(os.fstat(self.fd)) == key_of(self.stat)
        except OSError:
            return False

    def last_byte(self, *, unchanged: bool) -> bytes:
        """The body's last byte. The file's own when it is ``unchanged``; when it
        changed, one that differs from it, so the bytes sent cannot match the
        digest announced: the server answers ``ERR integrity``, places nothing,
        and the connection stays in step (closing it would cost the others)."""
        if unchanged:
            return self._last
        return bytes([self._last[0] ^ 0xFF])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LocalSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def tree_files(root: Path) -> list[tuple[Path, str]]:
    """The files a folder upload sends: ``(local path, path relative to root)``,
    folder by folder in name order.

    Hidden names (``.git``, ``.DS_Store``, a download's partial) are left out,
    as the server would refuse them. A symlink is followed only when it
    names a regular file inside ``root``; symlinked folders are never entered
    (no loops, nothing from outside the folder given).
    """
    if not root.is_dir():
        raise UnreadableFile(f"{root} is not a folder")
    top = root.resolve()
    found: list[tuple[Path, str]] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        here = Path(folder)
        for name in sorted(files):
            if name.startswith("."):
                continue
            local = here / name
            if local.is_symlink() and not _inside(local, top):
                continue
            if local.is_file():
                found.append((local, local.relative_to(root).as_posix()))
    return found


def _inside(link: Path, top: Path) -> bool:
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):  # broken, or a loop
        return False
    return target.is_relative_to(top) and target.is_file()
