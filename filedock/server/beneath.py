"""Opening a folder beneath another in one system call: Linux's ``openat2`` with
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``, through libc (the standard library
has no binding).

A request's path of real folders, the usual case, is then one call where a
walk opens and closes each folder on the way; the kernel refuses a path with
a symlink anywhere on it, and one that would leave the starting folder, and
the caller walks such a path itself, by the repository's rules. Where the
kernel (before 5.6) or a seccomp filter has no ``openat2``, :func:`open_folder`
answers None from then on and every path is walked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys

_SYS_OPENAT2 = 437  # the same on every Linux architecture (a call added after 5.0)
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

# What says the call itself is missing or refused (not the path): never asked again.
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG})
# What says only that this path is the walk's to judge: a symlink on it (ELOOP),
# a way out (EXDEV), a rename or mount racing the lookup (EAGAIN), a path of
# 4096 bytes or more, which the walk opens a name at a time (ENAMETOOLONG).
_WALK_IT = frozenset({errno.ELOOP, errno.EXDEV, errno.EAGAIN, errno.ENAMETOOLONG})


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Openat2:
    """The call, bound once; ``usable`` goes False at the first sign the kernel lacks it."""

    def __init__(self) -> None:
        self.usable = sys.platform == "linux"
        if not self.usable:
            return
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._syscall.argtypes = [
            ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t
        ]  # fmt: skip
        how = _OpenHow(_FOLDER_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
        self._how = how  # (kept alive: the pointer below points into it)
        self._how_ref = ctypes.addressof(how)
        self._how_size = ctypes.sizeof(how)

    def open_folder(self, dir_fd: int, path: str) -> int | None:
        fd: int = self._syscall(
            _SYS_OPENAT2, dir_fd, os.fsencode(path), self._how_ref, self._how_size
        )
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        if code in _WALK_IT:
            return None
        if code in _UNSUPPORTED:
            self.usable = False
            return None
        raise OSError(code, os.strerror(code))


_openat2 = _Openat2()


def open_folder(dir_fd: int, path: str) -> int | None:
    """A new descriptor of the folder ``path`` (relative, its names plain) beneath
    ``dir_fd``, or None where it is the caller's walk to decide: a symlink on
    the path, a way out of ``dir_fd``, a race, or no ``openat2`` here.

    Raises OSError as ``open`` would: ENOENT, ENOTDIR (a file on the path),
    EACCES, EMFILE.
    """
    if not _openat2.usable:
        return None
    return _openat2.open_folder(dir_fd, path)


def available() -> bool:
    """Whether :func:`open_folder` still uses ``openat2`` (False once it found it missing)."""
    return _openat2.usable
