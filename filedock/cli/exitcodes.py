"""What the client's exit status means (documented in --help and the README)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from ..errors import (
    Changed,
    ConnectionLost,
    Exists,
    FiledockError,
    Forbidden,
    IntegrityError,
    NoSpace,
    NotFound,
    ServerClosing,
    ServerFull,
    Unauthorized,
    UploadTooLarge,
)


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # any other failure (a refused request, a file that could not be saved)
    USAGE = 2  # bad command line
    CONNECTION = 3  # could not connect, or the connection was lost or closed by the server
    SERVER_FULL = 4  # the server had no free slot
    NOT_AVAILABLE = 5  # the file does not exist or may not be read
    INTEGRITY = 6  # a download did not match its SHA-256
    UNAUTHORIZED = 7  # the server wants an access token and ours was missing or wrong
    CHANGED = 8  # the server's file changed while it was sent: nothing was kept
    KEPT = 9  # --no-clobber kept a local file that differs from the server's
    EXISTS = 10  # put: the server has a file at that path (and --replace was not given)
    NO_SPACE = 11  # put: the server has no room for the file
    TOO_LARGE = 12  # put: the file is over the server's upload size limit
    FORBIDDEN = 13  # put: the server takes no uploads, not with this token, or not there
    INTERRUPTED = 130  # a one-shot command stopped by Ctrl-C (128 + SIGINT, as shells do)


# When several things failed (a `get` of many files), the status names the
# worst: a file that failed its check, then a lost connection, then a file
# that changed while it was sent, then (put) a full disk, then any other
# failure, then (put) a file too large, an upload refused, then a file that is
# not there, then (put) a server file kept, then a local file kept by
# --no-clobber (nothing failed, but the copy is not the server's).
_SEVERITY = (
    ExitCode.INTEGRITY,
    ExitCode.CONNECTION,
    ExitCode.CHANGED,
    ExitCode.NO_SPACE,
    ExitCode.ERROR,
    ExitCode.TOO_LARGE,
    ExitCode.FORBIDDEN,
    ExitCode.NOT_AVAILABLE,
    ExitCode.EXISTS,
    ExitCode.KEPT,
)


def worst(codes: Iterable[ExitCode]) -> ExitCode:
    """The exit status of a run whose parts ended with ``codes``: the worst one, or OK."""
    seen = set(codes)
    for code in _SEVERITY:
        if code in seen:
            return code
    return max(seen, default=ExitCode.OK)


def exit_code_for(error: FiledockError) -> ExitCode:
    """The exit status a client run that ended with ``error`` returns."""
    if isinstance(error, ServerFull):
        return ExitCode.SERVER_FULL
    if isinstance(error, Unauthorized):
        return ExitCode.UNAUTHORIZED
    if isinstance(error, ConnectionLost | ServerClosing):
        return ExitCode.CONNECTION
    if isinstance(error, Changed):
        return ExitCode.CHANGED
    if isinstance(error, NotFound | Forbidden):
        return ExitCode.NOT_AVAILABLE
    if isinstance(error, IntegrityError):
        return ExitCode.INTEGRITY
    return ExitCode.ERROR


def upload_exit_code(error: FiledockError) -> ExitCode:
    """The exit status of a ``put`` whose file met ``error``: the upload's own
    refusals have their statuses, the rest are those of any command."""
    if isinstance(error, Exists):
        return ExitCode.EXISTS
    if isinstance(error, NoSpace):
        return ExitCode.NO_SPACE
    if isinstance(error, UploadTooLarge):
        return ExitCode.TOO_LARGE
    if isinstance(error, Forbidden):
        return ExitCode.FORBIDDEN
    return exit_code_for(error)


EXIT_CODES_HELP = """exit status:
  0  success
  1  another failure (a refused request, a file that could not be saved)
  2  usage error
  3  could not connect, or the connection was lost or closed by the server
  4  the server is at capacity
  5  the file does not exist or may not be read (not-found, forbidden)
  6  a download failed its SHA-256 check (put: the bytes the server got did not match)
  7  the server requires an access token and ours was missing or wrong
  8  a file changed on the server while it was sent (nothing kept; get it again);
     put: the local file changed while it was sent (nothing stored; put it again)
  9  --no-clobber kept a local file that differs from the server's
  10  put: the server has a file at that path (use --replace to replace it)
  11  put: the server has no room for the file
  12  put: the file is over the server's upload size limit
  13  put: the server takes no uploads (or not with this token, or not at that path)
  130  a one-shot command interrupted by Ctrl-C (a partial download is kept for a resume)
  143, 129  stopped by SIGTERM or SIGHUP
  (several files exit with the worst: 6, 3, 8, 11, 1, 12, 13, 5, 10, then 9)"""
