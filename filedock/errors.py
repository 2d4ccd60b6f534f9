"""One exception hierarchy for the server and the client.

::

    FiledockError
    ├── ProtocolError          the peer broke the wire protocol
    │   ├── LineTooLong        a line over the limit (ERR line-too-long)
    │   └── BadEncoding        a line that is not UTF-8 (ERR bad-encoding)
    ├── RequestError           a request was refused (an ``ERR <code>`` reply)
    │   ├── BadRequest         missing or malformed arguments
    │   ├── NotFound           no such file in the repository
    │   ├── Forbidden          a path the repository will not serve
    │   ├── Changed            the file is not the one named by its SHA-256 any more
    │   ├── BadRange           a resume offset past the end of the file
    │   ├── Exists             an upload in mode new of a path that exists
    │   ├── NoSpace            an upload the server has no room for
    │   ├── UploadTooLarge     an upload over the server's size limit (also a TooLarge)
    │   ├── UploadCorrupted    an upload whose bytes did not match its digest (also an
    │   │                      IntegrityError)
    │   └── ServerClosing      the server ended the session (shutdown, timeout)
    │       └── Unauthorized   the server wants a valid access token
    ├── ServerFull             no free slot; carries the server's reason
    ├── ConnectionLost         the connection broke or went silent
    │   └── TimedOut           no answer within the client's timeout
    ├── IntegrityError         a download did not match its SHA-256
    └── SaveError              a download could not be written locally
        └── TooLarge           refused before writing: over max_size, or no room on the disk

Errors that travel on the wire carry their ``ERR`` code in ``code``, so the
server turns them into a reply and the client turns a reply back into the
same class (:func:`error_for_code`).

Messages quote what the server sent, so ``str()`` of any of these errors
shows control and bidirectional characters as escapes (a script that prints
an error cannot be made to drive its terminal); ``text`` and ``reason``
keep the server's words as they came.
"""

from __future__ import annotations

from .protocol.codes import CLOSING_CODES, ErrorCode
from .safetext import printable


class FiledockError(Exception):
    """Base of every error filedock raises on purpose.

    A refusal carries the wire's ``code`` and ``text``; the session goes on:

    >>> try:
    ...     client.get("nope.txt")
    ... except filedock.FiledockError as exc:
    ...     print(type(exc).__name__, exc.code, exc.text, sep=" | ")
    NotFound | not-found | no such file in the repository
    """

    def __str__(self) -> str:
        return printable(super().__str__())


class ProtocolError(FiledockError):
    """The peer sent something the protocol does not allow."""

    code: str = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class LineTooLong(ProtocolError):
    code = ErrorCode.LINE_TOO_LONG


class BadEncoding(ProtocolError):
    code = ErrorCode.BAD_ENCODING


class RequestError(FiledockError):
    """The server answered ``ERR <code> <text>``.

    ``code`` is the machine-readable word, ``text`` the part for people.
    """

    code: str = ErrorCode.INTERNAL

    def __init__(self, text: str, *, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return printable(f"{self.code}: {self.text}" if self.text else self.code)


class BadRequest(RequestError):
    code = ErrorCode.BAD_REQUEST


class NotFound(RequestError):
    code = ErrorCode.NOT_FOUND


class Forbidden(RequestError):
    code = ErrorCode.FORBIDDEN


class Changed(RequestError):
    """The server's file is not the one the client named by its SHA-256 (or it
    changed while it was sent)."""

    code = ErrorCode.CHANGED


class BadRange(RequestError):
    """A resume offset past the end of the server's file."""

    code = ErrorCode.BAD_RANGE


class Exists(RequestError):
    """An upload in mode ``new`` of a path the server already has (or that
    another upload placed first)."""

    code = ErrorCode.EXISTS


class NoSpace(RequestError):
    """An upload the server has no room for (refused up front, or the disk
    filled while it came)."""

    code = ErrorCode.NO_SPACE


class ServerClosing(RequestError):
    """The server said it is closing this session (``shutdown``, ``timeout``, …)."""

    code = ErrorCode.SHUTDOWN


class Unauthorized(ServerClosing):
    """The server requires an access token and ours was missing or wrong."""

    code = ErrorCode.UNAUTHORIZED


class ServerFull(FiledockError):
    """The server had no free slot (``FULL <reason>``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectionLost(FiledockError):
    """The connection closed, was reset, or could not be made."""


class TimedOut(ConnectionLost):
    """The server did not answer within the client's timeout."""


class IntegrityError(FiledockError):
    """A downloaded body did not match the SHA-256 the server announced."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class SaveError(FiledockError):
    """A download could not be saved (disk full, read-only folder).

    When the body could be read whole (it was refused before writing and is
    small, or it was small enough to be held in memory) the connection remains
    usable; otherwise the client stops reading it and closes the connection,
    which would be out of step with the server (see :attr:`Client.closed`).
    """


class TooLarge(SaveError):
    """A download refused before any byte was written: larger than the client's
    ``max_size``, or than the free space of the destination's file system."""


class UploadTooLarge(TooLarge, RequestError):
    """The server refused an upload over its size limit (``ERR too-large``):
    a :class:`TooLarge` that came as a reply."""

    code = ErrorCode.TOO_LARGE


class UploadCorrupted(IntegrityError, RequestError):
    """The server received an upload whose bytes did not match the SHA-256
    it was announced with (``ERR integrity``): nothing was placed."""

    code = ErrorCode.INTEGRITY

    def __init__(self, text: str, *, code: str | None = None) -> None:
        RequestError.__init__(self, text, code=code)
        self.expected = self.actual = ""


# Kept apart from the local TooLarge and IntegrityError of downloads, which a
# caller still tells from a server's refusal by their not being RequestErrors.
_ERROR_CLASSES: dict[str, type[RequestError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        NotFound,
        Forbidden,
        Changed,
        BadRange,
        Exists,
        NoSpace,
        UploadTooLarge,
        UploadCorrupted,
    )
}


def error_for_code(code: str, text: str) -> RequestError:
    """The exception a client raises for the reply ``ERR <code> <text>``."""
    if code == Unauthorized.code:
        return Unauthorized(text)
    if code in CLOSING_CODES:
        return ServerClosing(text, code=code)
    cls = _ERROR_CLASSES.get(code, RequestError)
    return cls(text, code=code)
