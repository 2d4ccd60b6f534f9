"""The client library: one blocking connection to a filedock server.

Every command is a short typed method over one request/reply exchange;
``ERR <code>`` replies become exceptions (see :mod:`filedock.errors`), and a
broken connection always surfaces as :class:`ConnectionLost`, never as a
raw ``OSError``. The interactive shell and the one-shot commands use this
and nothing else.

>>> with Client("127.0.0.1", port) as client:
...     saved = client.get("sample.txt", "downloads")
>>> saved.read_bytes()
b'hello\\n'
"""

from __future__ import annotations

import builtins
import functools
import math
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from .. import protocol as p
from ..errors import (
    BadRequest,
    ConnectionLost,
    FiledockError,
    IntegrityError,
    LineTooLong,
    ProtocolError,
    SaveError,
    ServerFull,
    TimedOut,
    TooLarge,
    error_for_code,
)
from ..server.auth import TOKEN_PREFIX
from ..version import __version__
from .download import (
    Partial,
    Progress,
    discard_body,
    local_path,
    receive_body,
    remove_old_partials,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50000

# Bytes of GET lines :meth:`Client.get_many` keeps in flight. Small enough to
# fit in the sockets' buffers, so the client never blocks sending while the
# server blocks sending it a file the client is not reading yet.
PIPELINE_BYTES = 16 * 1024

# A body refused before it is written (over max_size, no room, an unwritable
# folder) is read and dropped up to this size, so the session goes on; past
# it, a new connection costs less than reading on, and this one is closed.
DISCARD_LIMIT = 64 * 1024 * 1024

# The longest wait a socket takes (about 115 days): longer ones overflow.
MAX_SECONDS = 10_000_000.0

_R = TypeVar("_R", bound=p.Reply)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A file saved by :meth:`Client.download`, :meth:`Client.get_many` or
    :meth:`Client.send_line`: where it is, its size and its (verified) SHA-256.

    >>> client.download("sample.txt", "downloads")
    DownloadResult(path=PosixPath('downloads/sample.txt'), size=6, sha256='5891b5b522d5...')
    """

    path: Path
    size: int
    sha256: str


class Client:
    """A connection to a filedock server, named and greeted.

    Connecting raises :class:`ServerFull` when the server has no free slot and
    :class:`ConnectionLost` when it cannot be reached. ``connect_timeout``
    bounds the connect (and, as a whole, the TLS handshake). ``tls`` is an
    ``ssl.SSLContext`` for a TLS server (see :func:`filedock.tls.client_context`);
    ``token`` is the access token for a server that requires one.

    ``timeout`` bounds the whole of each reply but a file's body: a server
    that trickles a reply a byte at a time is given up on too. During a body
    it bounds each silence, and ``max_time`` (seconds, None for no limit)
    bounds the whole command, as curl's ``--max-time`` does. ``max_size``
    (bytes, None for no limit) refuses a file announced larger, before any
    byte is written, as curl's ``--max-filesize`` does; a file is refused too
    when the destination's file system has less room than it needs. Bad
    values (a port outside 1-65535, a negative or NaN time) raise ValueError.

    ``name`` is the name the server gave, ``server`` its WELCOME text. Use it
    in a ``with`` block, or call :meth:`close`, to leave cleanly.

    >>> with filedock.Client("127.0.0.1", port, timeout=5.0) as other:
    ...     other.name.startswith("Client"), other.server
    (True, 'filedock 1.0.0')
    >>> filedock.Client("127.0.0.1", 1)
    Traceback (most recent call last):
      ...
    filedock.errors.ConnectionLost: cannot connect to 127.0.0.1:1: ...
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        token: str | None = None,
        max_time: float | None = None,
        max_size: int | None = None,
    ) -> None:
        self.host = host
        self.port = check_port(port)
        self.timeout = check_seconds("timeout", timeout)
        connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self.max_time = None if max_time is None else check_seconds("max_time", max_time)
        self.max_size = None if max_size is None else check_size("max_size", max_size)
        self._tls = tls
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("a token cannot be empty or hold white space")
        self._token = token
        self._reader = p.LineReader(p.CLIENT_MAX_LINE)
        self._chunk = memoryview(bytearray(64 * 1024))
        self._closed = False
        # When the read in progress must end (None: only silence is bounded), and
        # the timeout the socket has now (set again only when it changes).
        self._deadline: float | None = None
        self._deadline_message = self._silent_message = ""
        self._received = self._mark = 0  # bytes received in all, and when the deadline was set
        self._command_deadline: float | None = None
        self._command_message = ""
        self._sock_timeout = timeout
        self._line_bytes = 0  # bytes of the server's lines read so far
        self._swept: set[Path] = set()  # folders cleared of old partial files
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except TimeoutError:
            raise TimedOut(f"no answer from {host}:{port} within {connect_timeout:g} s") from None
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
        try:
            if tls is not None:
                self._sock = _start_tls(self._sock, tls, host, port)
            self._sock.settimeout(self.timeout)
            self._sock_timeout = self.timeout
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.name, self.server = self._handshake()
        except BaseException:
            self._sock.close()
            self._closed = True
            raise

    def _handshake(self) -> tuple[str, str]:
        try:
            admission = self._read_reply()
        except ConnectionLost as exc:
            if self._tls is None:
                raise type(exc)(
                    f"{exc} before naming this client (a TLS server? try --tls)"
                ) from None
            raise
        if isinstance(admission, p.FullReply):
            raise ServerFull(admission.reason)
        name = self._expect(admission, p.NameReply).name
        words = f"{name} filedock-client/{__version__}"
        if self._token is not None:
            words += f" {TOKEN_PREFIX}{self._token}"
        self._send(p.encode_request(p.Hello(words)))
        answer = self._read_reply()
        if isinstance(answer, p.FullReply):  # the slots filled while we greeted
            raise ServerFull(answer.reason)
        welcome = self._expect(answer, p.WelcomeReply)
        return name, welcome.server

    # -- commands ---------------------------------------------------------------

    def ping(self) -> float:
        """Round-trip time of a PING, in seconds.

        >>> client.ping() < 1.0
        True
        """
        start = time.perf_counter()
        self._expect(self._execute(p.Ping()), p.PongReply)
        return time.perf_counter() - start

    def who(self) -> list[str]:
        """Names of the clients connected now, in the order they connected.

        >>> client.who()
        ['Client01']
        """
        return list(self._expect(self._execute(p.Who()), p.WhoReply).names)

    def uptime(self) -> int:
        """Whole seconds since the server started.

        >>> client.uptime() >= 0
        True
        """
        return self._expect(self._execute(p.Uptime()), p.UptimeReply).seconds

    def about(self) -> str:
        """The server's name, version and protocol version.

        >>> client.about()
        'filedock 1.0.0 | protocol 1 | ...'
        """
        return self._expect(self._execute(p.About()), p.AboutReply).text

    def help(self) -> str:
        """The server's one-line list of commands.

        >>> client.help()
        'CMDs: help | status | list | ...'
        """
        return self._expect(self._execute(p.Help()), p.HelpReply).text

    def status(self) -> list[p.ClientRecord]:
        """Every client the server has had (within its history), oldest first.

        >>> record = client.status()[0]
        >>> record.name, record.finished, record.connected
        ('Client01', None, True)
        >>> record.accepted
        datetime.datetime(...)
        """
        header = self._expect(self._execute(p.Status()), p.StatusReply)
        return self._read_records(header.count, p.parse_client_record)

    def list(self) -> list[p.FileInfo]:
        """Every file in the server's repository, sorted by path.

        >>> [(info.path, info.size) for info in client.list()]
        [('sample.txt', 6)]
        """
        header = self._expect(self._execute(p.ListFiles()), p.FilesReply)
        return self._read_records(header.count, p.parse_file_info)

    def say(self, text: str) -> str:
        """Send ``text`` as a message (even if it is a command word); returns the echo.

        >>> client.say("ping")
        'ping'
        """
        return self._expect(self._execute(p.Say(text)), p.AckReply).text

    def get(
        self,
        path: str,
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download ``path`` into ``dest_dir`` (same relative path), verified; the saved path.

        Raises :class:`NotFound` / :class:`Forbidden` when the server refuses,
        :class:`IntegrityError` when the body does not match its SHA-256,
        :class:`ProtocolError` when the server names another or an unsafe path,
        :class:`SaveError` when the file cannot be written locally.
        ``progress(done, total)`` is called as the bytes arrive.

        >>> client.get("sample.txt", "downloads")
        PosixPath('downloads/sample.txt')
        >>> client.get("nope.txt")
        Traceback (most recent call last):
          ...
        filedock.errors.NotFound: not-found: no such file in the repository
        """
        return self.download(path, dest_dir, progress=progress).path

    def download(
        self,
        path: str,
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        progress: Progress | None = None,
    ) -> DownloadResult:
        """Like :meth:`get`, returning the size and SHA-256 too.

        >>> result = client.download("sample.txt", "downloads")
        >>> result.size, result.sha256[:12]
        (6, '5891b5b522d5')
        """
        header = self._expect(self._execute(p.Get(path)), p.FileReply)
        return self._receive(path, header, dest_dir, progress)

    def get_many(
        self,
        paths: Iterable[str],
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> builtins.list[DownloadResult | FiledockError]:
        """Download several files over this connection, pipelined: one outcome per path, in order.

        The ``GET`` lines go out together (up to :data:`PIPELINE_BYTES` of
        requests in flight, so neither side can block the other) and the
        replies are read in order, so the files come back to back without a
        round trip each. Each outcome is the :class:`DownloadResult`, or the
        error that file met (:class:`NotFound`, :class:`Forbidden`,
        :class:`IntegrityError`, :class:`SaveError`, …): one failure does
        not stop the others. If the connection breaks, its error
        (:class:`ConnectionLost`, :class:`ServerClosing`, :class:`ProtocolError`)
        is the outcome of every file not received yet, and the client is closed;
        so it is after a body that could not be saved and was not read whole
        (:class:`TooLarge`, a write error), the others then getting
        :class:`ConnectionLost`. ``max_time`` bounds the whole call.
        ``progress(path, done, total)`` is called as bytes arrive.

        >>> outcomes = client.get_many(["sample.txt", "nope.txt"], "downloads")
        >>> [type(outcome).__name__ for outcome in outcomes]
        ['DownloadResult', 'NotFound']
        >>> outcomes[0].path.as_posix()
        'downloads/sample.txt'
        """
        wanted = list(paths)
        outcomes: list[DownloadResult | FiledockError | None] = [None] * len(wanted)
        lines: list[tuple[int, bytes]] = []
        for index, path in enumerate(wanted):
            try:
                lines.append((index, p.encode_request(p.Get(path))))
            except ValueError:  # a line feed: it cannot travel on one line
                outcomes[index] = BadRequest(f"a path cannot hold a line break: {path!r}")
        in_flight: deque[tuple[int, int]] = deque()  # (index, request size) sent, not answered
        next_line = 0
        current: int | None = None  # the file whose reply is being read
        self._begin_command()
        try:
            while next_line < len(lines) or in_flight:
                batch: list[bytes] = []
                budget = PIPELINE_BYTES - sum(size for _, size in in_flight)
                while next_line < len(lines) and (
                    len(lines[next_line][1]) <= budget or not (in_flight or batch)
                ):
                    index, line = lines[next_line]
                    batch.append(line)
                    in_flight.append((index, len(line)))
                    budget -= len(line)
                    next_line += 1
                if batch:
                    self._send(b"".join(batch))
                current, _ = in_flight.popleft()
                outcomes[current] = self._get_reply(wanted[current], dest_dir, progress)
                current = None
        except FiledockError as exc:  # the connection is gone: no more replies will come
            self._abandon()
            rest: FiledockError = exc
            if current is not None and isinstance(exc, SaveError):
                # Closed here to stop receiving that file: the others were not refused.
                outcomes[current] = exc
                rest = ConnectionLost(
                    f"not fetched: the connection was closed after {wanted[current]!r} ({exc})"
                )
            outcomes = [rest if outcome is None else outcome for outcome in outcomes]
        except BaseException:
            self._abandon()  # requests in flight: the stream is out of step for good
            raise
        return [outcome for outcome in outcomes if outcome is not None]

    def _get_reply(
        self,
        path: str,
        dest_dir: str | os.PathLike[str],
        progress: Callable[[str, int, int], None] | None,
    ) -> DownloadResult | FiledockError:
        """Read the reply to one pipelined GET; a failure that leaves the stream usable is returned.

        A failure that breaks the connection is raised instead.
        """
        on_bytes = None if progress is None else functools.partial(progress, path)
        try:
            header = self._read_reply()
            if not isinstance(header, p.FileReply):
                self._abandon()  # records may follow it: the stream is out of step
                raise ProtocolError(f"expected FILE for {path!r}, the server sent {header!r}")
            return self._receive(path, header, dest_dir, on_bytes)
        except FiledockError as exc:
            if self._closed:
                raise
            return exc

    def send_line(
        self,
        text: str,
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        progress: Progress | None = None,
    ) -> str | DownloadResult:
        """Send a line as a person typed it: a message, or the name of a file.

        Returns the echoed text, or the :class:`DownloadResult` when the server
        took the line as a file's name and sent the file.

        >>> client.send_line("hello there")
        'hello there'
        >>> client.send_line("sample.txt", "downloads")
        DownloadResult(path=PosixPath('downloads/sample.txt'), size=6, sha256='...')
        """
        reply = self._execute(p.Message(text))
        if isinstance(reply, p.AckReply):
            return reply.text
        header = self._expect(reply, p.FileReply)
        # The server took the line without its ASCII padding, as it strips it.
        return self._receive(text.strip(p.LINE_PADDING), header, dest_dir, progress)

    def exit(self) -> bool:
        """Say EXIT, wait briefly for BYE, and close; whether BYE came. Safe to call twice.

        >>> other = filedock.Client("127.0.0.1", port)
        >>> other.exit(), other.exit(), other.closed
        (True, False, True)
        """
        if self._closed:
            return False
        try:
            return isinstance(self._execute(p.Exit(), within=min(self.timeout, 2.0)), p.ByeReply)
        except FiledockError:
            return False  # the server is gone or closing: nothing left to say
        finally:
            self._abandon()

    def close(self) -> None:
        """Leave the server (EXIT, then close). Safe to call twice."""
        self.exit()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the wire ---------------------------------------------------------------

    def _begin_command(self, within: float | None = None) -> None:
        """Start the clock of a command: ``within`` seconds, else max_time, else none."""
        limit = self.max_time if within is None else within
        if limit is None:
            self._command_deadline = None
        else:
            self._command_deadline = time.monotonic() + limit
            self._command_message = f"the command did not finish within {limit:g} s"

    def _execute(self, request: p.Request, *, within: float | None = None) -> p.Reply:
        """Send one request and read its reply line; ``ERR`` raises."""
        if self._closed:
            raise ConnectionLost("the connection is closed")
        self._begin_command(within)
        self._send(p.encode_request(request))
        return self._read_reply()

    def _expect(self, reply: p.Reply, kind: type[_R]) -> _R:
        if not isinstance(reply, kind):
            raise ProtocolError(f"expected {kind.__name__}, the server sent {reply!r}")
        return reply

    def _receive(
        self,
        path: str,
        header: p.FileReply,
        dest_dir: str | os.PathLike[str],
        progress: Progress | None,
    ) -> DownloadResult:
        if header.path != path:
            # The server answered for another file: its body cannot be trusted
            # either, and the stream cannot be resynchronised.
            self._abandon()
            raise ProtocolError(f"asked for {path!r}, the server sent {header.path!r}")
        try:
            dest = local_path(dest_dir, header.path)
        except ProtocolError:
            self._abandon()
            raise
        first = self._reader.take_rest()
        if len(first) > header.size:  # replies pipelined behind the body
            self._reader.receive_data(first[header.size :])
            first = first[: header.size]
        # The body is bounded by max_time as a whole, and by timeout per silence.
        self._set_deadline(self._command_deadline, self._command_message)
        partial = self._open_partial(dest, header.size, first)
        try:
            received = receive_body(self._recv_into, first, header.size, partial.fd, progress)
        except BaseException:
            partial.discard()
            self._abandon()  # stopped mid-body (lost, interrupted): out of step for good
            raise
        if received.write_error is not None:
            partial.discard()
            if not received.whole:
                self._abandon()  # the rest of the body was never read
            raise SaveError(f"cannot write {dest}: {received.write_error.strerror}")
        if received.sha256 != header.sha256:
            partial.discard()
            raise IntegrityError(
                f"SHA-256 mismatch for {dest.name}",
                expected=header.sha256,
                actual=received.sha256,
            )
        return DownloadResult(partial.commit(), header.size, header.sha256)

    def _open_partial(self, dest: Path, size: int, first: bytes) -> Partial:
        """Where the body of ``dest`` goes, or the reason it is refused, before any byte is written.

        A refused body is read and dropped when it is small, so the session
        goes on; a larger one closes the connection.
        """
        try:
            if self.max_size is not None and size > self.max_size:
                raise TooLarge(
                    f"{dest.name} is {size} bytes, over the limit of {self.max_size} bytes"
                )
            if dest.parent not in self._swept:
                self._swept.add(dest.parent)
                remove_old_partials(dest.parent)
            return Partial.open(dest, size)
        except SaveError:
            if size - len(first) <= DISCARD_LIMIT:
                discard_body(self._recv_into, first, size)
            else:
                self._abandon()
            raise

    def _set_deadline(self, deadline: float | None, message: str, silent: str = "") -> None:
        """Reads from now on must end by ``deadline`` (None: each silence is bounded only).

        ``message`` says why when it passes; ``silent`` instead, if given,
        when not a byte came meanwhile.
        """
        self._deadline = deadline
        self._deadline_message = message
        self._silent_message = silent or message
        self._mark = self._received

    def _timed_out(self, deadline_passed: bool) -> TimedOut:
        self._abandon()
        if not deadline_passed:
            return TimedOut(f"no answer from the server within {self.timeout:g} s")
        if self._received == self._mark:
            return TimedOut(self._silent_message)
        return TimedOut(self._deadline_message)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError:
            self._abandon()
            raise TimedOut(f"the server took no data for {self.timeout:g} s") from None
        except OSError as exc:
            self._abandon()
            raise ConnectionLost(f"connection to the server was lost: {_reason(exc)}") from None

    def _recv_into(self, view: memoryview) -> int:
        deadline = self._deadline
        wait = self.timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(True)
            wait = min(wait, left)
        if wait != self._sock_timeout:
            self._sock.settimeout(wait)
            self._sock_timeout = wait
        try:
            count = self._sock.recv_into(view)
        except TimeoutError:
            raise self._timed_out(wait < self.timeout) from None
        except OSError as exc:
            self._abandon()
            raise ConnectionLost(f"connection to the server was lost: {_reason(exc)}") from None
        self._received += count
        return count

    def _read_text(self) -> str:
        while True:
            try:
                line = self._reader.next_line()
            except LineTooLong:
                self._abandon()  # the rest of that line would be taken for replies
                raise LineTooLong(
                    f"the server sent a line longer than {self._reader.max_line} bytes"
                ) from None
            if line is not None:
                self._line_bytes += len(line) + 1
                try:
                    return line.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError("the server sent a line that is not UTF-8") from None
            count = self._recv_into(self._chunk)
            if count == 0:
                self._abandon()
                raise ConnectionLost("the server closed the connection")
            self._reader.receive_data(self._chunk[:count])

    def _read_records(self, count: int, parse: Callable[[str], _T]) -> builtins.list[_T]:
        """The ``count`` records of a STATUS or FILES reply (within its reply's deadline)."""
        start = self._line_bytes
        records = []
        for _ in range(count):
            records.append(self._read_record(parse))
            if self._line_bytes - start > p.MAX_RECORD_BYTES:
                self._abandon()
                raise ProtocolError(
                    f"the server sent more than {p.MAX_RECORD_BYTES} bytes of records"
                )
        return records

    def _read_record(self, parse: Callable[[str], _T]) -> _T:
        """One record line of a STATUS or FILES reply, parsed."""
        try:
            return parse(self._read_text())
        except ProtocolError:
            self._abandon()  # the records after it would be taken for replies
            raise

    def _read_reply(self) -> p.Reply:
        """The next reply line, and any records after it, within ``timeout`` (and max_time)."""
        deadline = time.monotonic() + self.timeout
        if self._command_deadline is not None and self._command_deadline < deadline:
            self._set_deadline(self._command_deadline, self._command_message)
        else:
            self._set_deadline(
                deadline,
                f"the server did not send its whole answer within {self.timeout:g} s",
                f"no answer from the server within {self.timeout:g} s",
            )
        try:
            reply = p.parse_reply(self._read_text())
        except ProtocolError:
            self._abandon()  # the stream cannot be trusted past this point
            raise
        if isinstance(reply, p.ErrorReply):
            error = error_for_code(reply.code, reply.text)
            if error.code in p.CLOSING_CODES:
                self._abandon()
            raise error
        return reply

    def _abandon(self) -> None:
        """Close without goodbye: the stream is broken or the server is closing."""
        if not self._closed:
            self._closed = True
            self._sock.close()


def check_port(port: int) -> int:
    """``port`` if it is a TCP port a server can listen on (1-65535); ValueError if not."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, not {port!r}")
    return port


def check_seconds(name: str, value: float) -> float:
    """``value`` if it is a usable time in seconds (over 0, at most MAX_SECONDS); or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise ValueError(
            f"{name} must be over 0 and at most {MAX_SECONDS:g} seconds, not {value!r}"
        )
    return float(value)


def check_size(name: str, value: int) -> int:
    """``value`` if it is a whole number of bytes, 0 or more; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of bytes, 0 or more, not {value!r}")
    return value


def _start_tls(sock: socket.socket, context: ssl.SSLContext, host: str, port: int) -> socket.socket:
    """Wrap a connected socket in TLS, checking the server's certificate."""
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ConnectionLost(
            f"TLS: the certificate of {host}:{port} was not accepted ({exc.verify_message})"
        ) from None
    except TimeoutError:
        sock.close()
        raise TimedOut(f"TLS handshake with {host}:{port} timed out") from None
    except OSError as exc:  # ssl.SSLError included
        sock.close()
        reason = getattr(exc, "reason", None) or _reason(exc)
        raise ConnectionLost(
            f"TLS handshake with {host}:{port} failed ({reason}): is it a TLS server?"
        ) from None


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
