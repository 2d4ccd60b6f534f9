"""What the client's exit status means (documented in --help and the README)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from ..errors import (
    Changed,
    ConnectionLost,
    FiledockError,
    Forbidden,
    IntegrityError,
    NotFound,
    ServerClosing,
    ServerFull,
    Unauthorized,
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
    INTERRUPTED = 130  # a one-shot command stopped by Ctrl-C (128 + SIGINT, as shells do)


# When several things failed (a `get` of many files), the status names the
# worst: a file that failed its check, then a lost connection, then a file
# that changed while it was sent, then any other failure, then a file that is
# not there, then a local file kept by --no-clobber (nothing failed, but the
# copy is not the server's).
_SEVERITY = (
    ExitCode.INTEGRITY,
    ExitCode.CONNECTION,
    ExitCode.CHANGED,
    ExitCode.ERROR,
    ExitCode.NOT_AVAILABLE,
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


EXIT_CODES_HELP = """exit status:
  0  success
  1  another failure (a refused request, a file that could not be saved)
  2  usage error
  3  could not connect, or the connection was lost or closed by the server
  4  the server is at capacity
  5  the file does not exist or may not be read (not-found, forbidden)
  6  a download failed its SHA-256 check
  7  the server requires an access token and ours was missing or wrong
  8  a file changed on the server while it was sent (nothing kept; get it again)
  9  --no-clobber kept a local file that differs from the server's
  130  a one-shot command interrupted by Ctrl-C (a partial download is kept for a resume)
  143, 129  stopped by SIGTERM or SIGHUP
  (a `get` or `mirror` of several files exits with the worst: 6, 3, 8, 1, 5, then 9)"""
