"""What ``Client.stat`` and ``Client.exists`` read a server file's metadata from.

``LIST <folder>`` (of the file's folder) gives its size and mtime without the
server hashing anything; ``HASH`` gives its SHA-256 too (the server hashes a
file it has not hashed yet, once). A version 1 server has neither ``HASH``
nor ``LIST <folder>``: its whole ``LIST`` is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NotFound
from ..protocol import FileDigest, FileInfo


@dataclass(frozen=True, slots=True)
class FileStat(FileInfo):
    """A server file's ``path``, ``size`` and ``mtime`` (UTC), and its ``sha256``
    when it was asked for (``stat(path, digest=True)``), else None.

    >>> info = client.stat("sample.txt")
    >>> info.size, info.mtime.tzinfo, info.sha256
    (6, datetime.timezone.utc, None)
    """

    sha256: str | None = None

    @classmethod
    def of_digest(cls, digest: FileDigest) -> FileStat:
        return cls(digest.path, digest.size, digest.mtime, digest.sha256)


def folder_of(path: str) -> str | None:
    """The folder whose listing holds ``path`` (None: the repository's top)."""
    folder, _, _ = path.strip("/").rpartition("/")
    return folder or None


def stat_from_listing(path: str, files: list[FileInfo]) -> FileStat:
    """``path``'s record in a listing; NotFound when it has none (a folder says so)."""
    wanted = path.strip("/")
    for info in files:
        if info.path == wanted:
            return FileStat(info.path, info.size, info.mtime)
    if holds_folder(wanted, files):
        raise NotFound(f"{wanted} is a folder, not a file: list it, or download_tree it")
    raise NotFound("no such file in the repository")


def holds_folder(folder: str, files: list[FileInfo]) -> bool:
    """Whether a listing has files under ``folder``."""
    prefix = folder.strip("/") + "/"
    return any(info.path.startswith(prefix) for info in files)


def listed(path: str, files: list[FileInfo]) -> bool:
    """Whether a listing has ``path``, as a file or as a folder holding files."""
    wanted = path.strip("/")
    return any(info.path == wanted for info in files) or holds_folder(wanted, files)
