"""Framing: a byte stream split into lines, and the limits on lines and records.

:class:`LineReader` frames an incoming byte stream into lines and enforces the
line limit; :func:`decode_line` enforces UTF-8. Both sides read with them.
"""

from __future__ import annotations

from .. import errors

# A line is at most this many bytes, CR and LF included. 4 KiB holds any
# command and any repository path a person would type (Linux PATH_MAX is
# 4096 too), and keeps a connection's input buffer small.
DEFAULT_MAX_LINE = 4096

# The client reads the server's lines with a larger limit: a FILE header
# carries a path of up to DEFAULT_MAX_LINE bytes after its other fields.
CLIENT_MAX_LINE = 64 * 1024

# The longest line limit a server may be given: the path it lets a request
# carry comes back in a FILE header, which a client must still be able to read
# (CLIENT_MAX_LINE), and each connection may hold a line this long.
MAX_LINE_LIMIT = 32 * 1024

# What a client accepts in one STATUS or FILES reply. A hostile server could
# otherwise announce 10**20 records, or stream records without end, and grow
# the client until the machine runs out of memory. A million records is far
# over any listing this server makes in practice (each record costs the client
# a few hundred bytes of Python objects), and 128 MiB of record lines is a
# million records of 134 bytes each. (A million FILES records parsed take about
# 180 MiB of the client's memory.)
MAX_RECORDS = 1_000_000
MAX_RECORD_BYTES = 128 * 1024 * 1024


class LineReader:
    """Split a byte stream into lines, holding at most ``max_line`` bytes of a
    line that has not ended yet.

    Feed bytes with :meth:`receive_data`; take lines with :meth:`next_line`,
    which returns ``None`` when it needs more data and raises
    :class:`LineTooLong` when the next line is over the limit. A line is
    returned without its LF, and without a CR right before the LF.
    """

    # Received bytes are split into lines up to this many at a time: one C call
    # instead of a search per line, while the lines split and not yet taken stay
    # few (a flood of pipelined requests holds this much as line objects, at most).
    _SPLIT_WINDOW = 16 * 1024

    __slots__ = ("max_line", "_data", "_lines", "_index")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 2:
            raise ValueError("max_line must leave room for a character and LF")
        self.max_line = max_line
        self._data = bytearray()  # received, not split into _lines yet
        self._lines: list[bytes] = []  # split off, each with its CR if any
        self._index = 0  # the first of _lines not returned yet

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def next_line(self) -> bytes | None:
        lines = self._lines
        index = self._index
        if index == len(lines):
            if not self._split():
                return None
            lines = self._lines
            index = 0
        line = lines[index]
        if len(line) >= self.max_line:  # with its LF it would be over the limit
            raise errors.LineTooLong(f"line longer than {self.max_line} bytes")
        self._index = index + 1
        if line[-1:] == b"\r":  # CR before LF
            return line[:-1]
        return line

    def _split(self) -> bool:
        """Move the next window of complete lines from _data to _lines; False if none."""
        data = self._data
        if not data:
            return False
        if data[-1] == 0x0A and len(data) <= self._SPLIT_WINDOW:
            # Only whole lines, as a client that waits for its answers sends them.
            self._lines = bytes(data).split(b"\n")
            self._lines.pop()  # the empty text after the last LF
            self._index = 0
            data.clear()
            return True
        cut = data.rfind(b"\n", 0, self._SPLIT_WINDOW)
        if cut < 0:
            cut = data.find(b"\n")
            if cut < 0:
                # Without its LF the pending line is already this long: with the
                # LF it would be over the limit.
                if len(data) >= self.max_line:
                    raise errors.LineTooLong(f"line longer than {self.max_line} bytes")
                return False
        self._lines = bytes(data[:cut]).split(b"\n")
        self._index = 0
        del data[: cut + 1]
        return True

    def take_lines(self, limit: int) -> list[bytes]:
        """Up to ``limit`` of the complete lines received, at once (each as
        :meth:`next_line` returns it); none if no line is complete.

        Raises :class:`LineTooLong` if one of them is over the limit (the
        lines before it are lost: the stream is broken anyway).
        """
        lines = self._lines[self._index :]
        self._lines, self._index = [], 0
        data = self._data
        if len(lines) < limit:
            cut = data.rfind(b"\n")
            if cut >= 0:
                lines += bytes(data[:cut]).split(b"\n")
                del data[: cut + 1]
        if len(lines) > limit:  # kept for later, in order
            self._lines, lines = lines[limit:], lines[:limit]
        if lines and max(map(len, lines)) >= self.max_line:
            raise errors.LineTooLong(f"line longer than {self.max_line} bytes")
        if any(line[-1:] == b"\r" for line in lines):
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        return lines

    def take_rest(self) -> bytes:
        """Remove and return the bytes not yet read as lines (a body's start)."""
        pending = self._lines[self._index :]
        # One join in C: after a FILE header the "lines" are a window of the
        # body split at its LF bytes (a few hundred in 16 KiB of binary data).
        rest = b"\n".join(pending) + b"\n" + self._data if pending else bytes(self._data)
        self._lines = []
        self._index = 0
        self._data = bytearray()
        return rest

    def peek(self, count: int) -> bytes:
        """The first ``count`` bytes not yet read as lines, as they came (CRs kept)."""
        if self._index == len(self._lines):  # (the usual case: nothing split yet)
            return bytes(self._data[:count])
        rest = bytearray()
        for line in self._lines[self._index :]:
            if len(rest) >= count:
                break
            rest += line + b"\n"
        rest += self._data[: max(0, count - len(rest))]
        return bytes(rest[:count])

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as lines."""
        pending = self._lines[self._index :]
        return sum(map(len, pending)) + len(pending) + len(self._data)


# What the ends of a line lose: ASCII space, TAB and CR only. Unicode white
# space (NBSP, U+3000, NEL, U+2028, ...) may end a file's name, so it stays.
LINE_PADDING = " \t\r"


def decode_line(line: bytes) -> str:
    """The text of a line: UTF-8, without leading and trailing ASCII space, TAB and CR."""
    try:
        return line.decode("utf-8").strip(LINE_PADDING)
    except UnicodeDecodeError:
        raise errors.BadEncoding("line is not valid UTF-8") from None
