"""The codes of ``ERR <code> <text>`` replies, spelled once, and which of them close."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """The code of an ``ERR <code> <text>`` reply (see PROTOCOL.md)."""

    BAD_REQUEST = "bad-request"
    NOT_FOUND = "not-found"
    FORBIDDEN = "forbidden"
    LINE_TOO_LONG = "line-too-long"
    BAD_ENCODING = "bad-encoding"
    HANDSHAKE = "handshake"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal"
    CHANGED = "changed"
    BAD_RANGE = "bad-range"
    EXISTS = "exists"
    TOO_LARGE = "too-large"
    NO_SPACE = "no-space"
    INTEGRITY = "integrity"

    @property
    def closes(self) -> bool:
        """Whether the server closes the connection after sending this code."""
        return self in CLOSING_CODES


# The codes after which the server closes the connection: the client stops
# reading then, as anything more would be out of step.
CLOSING_CODES = frozenset(
    {ErrorCode.SHUTDOWN, ErrorCode.TIMEOUT, ErrorCode.LINE_TOO_LONG, ErrorCode.UNAUTHORIZED}
)
