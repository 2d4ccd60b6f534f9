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
import contextlib
import functools
import math
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Concatenate, ParamSpec, TypeVar

from .. import protocol as p
from ..errors import (
    BadRequest,
    ConnectionLost,
    FiledockError,
    IntegrityError,
    ProtocolError,
    RequestError,
    SaveError,
    ServerFull,
    TooLarge,
    error_for_code,
)
from ..protocol.client import (
    NEED_DATA,
    BodyData,
    ClientConnection,
    ClientState,
    EndOfReply,
    ReceivedEvent,
)
from ..version import __version__
from .connection import SocketLink
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
_P = ParamSpec("_P")


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


# Events that come after a reply, never as one.
_NOT_REPLIES = (BodyData, EndOfReply, p.ClientRecord, p.FileInfo)

# The states in which a failed download leaves the stream usable.
_BETWEEN_REPLIES = frozenset({ClientState.IDLE, ClientState.AWAIT_REPLY})


_Method = Callable[Concatenate["Client", _P], _T]


def _command(method: _Method[_P, _T]) -> _Method[_P, _T]:
    """A public command: whatever way it ends, :meth:`Client._settle` follows."""

    @functools.wraps(method)
    def run(self: Client, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        finally:
            self._settle()

    return run


class Client:
    """A connection to a filedock server, named and greeted.

    Connecting raises :class:`ServerFull` when the server has no free slot and
    :class:`ConnectionLost` when it cannot be reached. ``connect_timeout``
    bounds the connect (and, as a whole, the TLS handshake). ``tls`` is an
    ``ssl.SSLContext`` for a TLS server (see :func:`filedock.client.connection.client_context`);
    ``token`` is the access token for a server that requires one.

    ``timeout`` bounds the whole of each reply but a file's body: a server
    that trickles a reply a byte at a time is given up on too. During a body
    it bounds each silence, and ``max_time`` (seconds, None for no limit)
    bounds the whole command, as curl's ``--max-time`` does. ``max_size``
    (bytes, None for no limit) refuses a file announced larger, before any
    byte is written, as curl's ``--max-filesize`` does; a file is refused too
    when the destination's file system has less room than it needs. Bad
    values (a port outside 1-65535, a negative or NaN time) raise ValueError.

    ``name`` is the name the server gave, ``server`` its WELCOME text (without
    the ``proto=2`` field), ``protocol`` the version the server speaks with it
    (2, or 1 for a server older than version 2). Use it in a ``with`` block,
    or call :meth:`close`, to leave cleanly.

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
        self._conn = ClientConnection(p.CLIENT_MAX_LINE, p.MAX_RECORD_BYTES)
        self._chunk = memoryview(bytearray(64 * 1024))
        self._command_deadline: float | None = None
        self._command_message = ""
        self._swept: set[Path] = set()  # folders cleared of old partial files
        self._link = SocketLink(
            host, port, timeout=self.timeout, connect_timeout=connect_timeout, tls=tls
        )
        try:
            welcome = self._handshake()
        except BaseException:
            self._link.close()
            raise
        self.name, self.server, self.protocol = welcome.name, welcome.server, welcome.protocol

    def _handshake(self) -> p.WelcomeReply:
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
        words = f"{name} filedock-client/{__version__} {p.PROTO_PREFIX}{p.HIGHEST_PROTOCOL}"
        if self._token is not None:
            words += f" {p.TOKEN_PREFIX}{self._token}"
        self._link.send(self._conn.send(p.Hello(words)))
        answer = self._read_reply()
        if isinstance(answer, p.FullReply):  # the slots filled while we greeted
            raise ServerFull(answer.reason)
        return self._expect(answer, p.WelcomeReply)

    # -- commands ---------------------------------------------------------------

    @_command
    def ping(self) -> float:
        """Round-trip time of a PING, in seconds.

        >>> client.ping() < 1.0
        True
        """
        start = time.perf_counter()
        self._expect(self._execute(p.Ping()), p.PongReply)
        return time.perf_counter() - start

    @_command
    def who(self) -> list[str]:
        """Names of the clients connected now, in the order they connected.

        >>> client.who()
        ['Client01']
        """
        return list(self._expect(self._execute(p.Who()), p.WhoReply).names)

    @_command
    def uptime(self) -> int:
        """Whole seconds since the server started.

        >>> client.uptime() >= 0
        True
        """
        return self._expect(self._execute(p.Uptime()), p.UptimeReply).seconds

    @_command
    def about(self) -> str:
        """The server's name, version and protocol version.

        >>> client.about()
        'filedock 1.0.0 | protocol 1 | ...'
        """
        return self._expect(self._execute(p.About()), p.AboutReply).text

    @_command
    def help(self) -> str:
        """The server's one-line list of commands.

        >>> client.help()
        'CMDs: help | status | list [folder] | get <file> | hash <path> | ...'
        """
        return self._expect(self._execute(p.Help()), p.HelpReply).text

    @_command
    def status(self) -> list[p.ClientRecord]:
        """Every client the server has had (within its history), oldest first.

        >>> record = client.status()[0]
        >>> record.name, record.finished, record.connected
        ('Client01', None, True)
        >>> record.accepted
        datetime.datetime(...)
        """
        self._expect(self._execute(p.Status()), p.StatusReply)
        return self._records(p.ClientRecord)

    @_command
    def list(self, folder: str | None = None) -> list[p.FileInfo]:
        """Every file in the server's repository, sorted by path; with ``folder``,
        only those under it (paths still from the top; none for a folder that
        does not exist).

        >>> [(info.path, info.size) for info in client.list()]
        [('sample.txt', 6)]
        >>> client.list("no-such-folder")
        []
        """
        self._expect(self._execute(p.ListFiles(folder)), p.FilesReply)
        return self._records(p.FileInfo)

    @_command
    def hash(self, path: str) -> p.FileDigest:
        """The size, mtime and SHA-256 of ``path`` on the server, without its bytes.

        Raises what :meth:`get` raises when the server refuses.

        >>> digest = client.hash("sample.txt")
        >>> digest.size, digest.sha256[:12], digest.mtime.tzinfo
        (6, '5891b5b522d5', datetime.timezone.utc)
        """
        reply = self._expect(self._execute(p.Hash(path)), p.HashReply)
        if reply.file.path != path:
            raise ProtocolError(f"asked for {path!r}, the server sent {reply.file.path!r}")
        return reply.file

    @_command
    def get_range(
        self,
        path: str,
        offset: int,
        sha256: str,
        sink: BinaryIO,
        *,
        progress: Progress | None = None,
    ) -> p.PartReply:
        """Write ``path``'s bytes from ``offset`` to its end into ``sink``, if the
        server's file still has the SHA-256 ``sha256``; the ``PART`` header.

        The part alone cannot be checked: whoever joins it to the bytes before
        ``offset`` checks the whole file's digest. Raises :class:`Changed`
        when the file is not the one with ``sha256`` any more,
        :class:`BadRange` when ``offset`` is past its end, what :meth:`get` raises otherwise, and
        :class:`SaveError` when ``sink`` cannot be written (the connection is
        closed then). ``progress(done, total)`` counts the part's bytes.

        >>> import io
        >>> sink = io.BytesIO()
        >>> part = client.get_range("sample.txt", 2, client.hash("sample.txt").sha256, sink)
        >>> part.offset, part.size, sink.getvalue()
        (2, 6, b'llo\\n')
        """
        request = p.Range(offset, sha256, path)
        header = self._expect(self._execute(request), p.PartReply)
        if (header.path, header.offset, header.sha256) != (path, offset, sha256):
            raise ProtocolError(f"asked for {request!r}, the server sent {header!r}")
        total = header.length
        first = self._body_start(total)
        self._link.set_deadline(self._command_deadline, self._command_message)
        done = 0
        try:
            view = memoryview(first)
            while True:
                sink.write(view)
                done += len(view)
                if progress is not None:
                    progress(done, total)
                if done >= total:
                    break
                count = self._recv_body_into(self._chunk[: total - done])
                view = self._chunk[:count]
        except OSError as exc:
            raise SaveError(f"cannot write the part of {path}: {exc.strerror}") from None
        self._body_end()
        return header

    @_command
    def say(self, text: str) -> str:
        """Send ``text`` as a message (even if it is a command word); returns the echo.

        >>> client.say("ping")
        'ping'
        """
        return self._expect(self._execute(p.Say(text)), p.AckReply).text

    @_command
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

    @_command
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

    @_command
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
                    batch.append(self._conn.send(p.Get(wanted[index])))
                    in_flight.append((index, len(line)))
                    budget -= len(line)
                    next_line += 1
                if batch:
                    self._link.send(b"".join(batch))
                current, _ = in_flight.popleft()
                outcomes[current] = self._get_reply(wanted[current], dest_dir, progress)
                current = None
        except FiledockError as exc:  # the stream is out of step: no more replies can be read
            rest: FiledockError = exc
            if current is not None and isinstance(exc, SaveError):
                # Closed to stop receiving that file: the others were not refused.
                outcomes[current] = exc
                rest = ConnectionLost(
                    f"not fetched: the connection was closed after {wanted[current]!r} ({exc})"
                )
            outcomes = [rest if outcome is None else outcome for outcome in outcomes]
        return [outcome for outcome in outcomes if outcome is not None]

    def _get_reply(
        self,
        path: str,
        dest_dir: str | os.PathLike[str],
        progress: Callable[[str, int, int], None] | None,
    ) -> DownloadResult | FiledockError:
        """Read the reply to one pipelined GET; a failure that leaves the stream usable is returned.

        A failure that leaves the stream out of step is raised instead.
        """
        on_bytes = None if progress is None else functools.partial(progress, path)
        try:
            header = self._expect(self._read_reply(), p.FileReply)
            return self._receive(path, header, dest_dir, on_bytes)
        except FiledockError as exc:
            if self._conn.state not in _BETWEEN_REPLIES:
                raise
            return exc

    @_command
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
        if self.closed:
            return False
        try:
            return isinstance(self._execute(p.Exit(), within=min(self.timeout, 2.0)), p.ByeReply)
        except FiledockError:
            return False  # the server is gone or closing: nothing left to say
        finally:
            self._link.close()

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
        return self._link.closed

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
        if self.closed:
            raise ConnectionLost("the connection is closed")
        self._begin_command(within)
        self._link.send(self._conn.send(request))
        return self._read_reply()

    def _expect(self, reply: p.Reply, kind: type[_R]) -> _R:
        if not isinstance(reply, kind):
            raise ProtocolError(f"expected {kind.__name__}, the server sent {reply!r}")
        return reply

    def _settle(self) -> None:
        """The rule at the end of every command: a conversation left out of step
        (a reply due or half read, the server closing, a broken stream) cannot be
        used again, so the connection is closed."""
        if self._conn.state is not ClientState.IDLE:
            self._link.close()

    def _next_event(self) -> ReceivedEvent:
        """The connection's next event, receiving bytes until there is one."""
        while True:
            event = self._conn.next_event()
            if event is not NEED_DATA:
                return event
            count = self._link.recv_into(self._chunk)
            self._conn.receive_data(self._chunk[:count])  # 0 bytes: the server closed

    def _read_reply(self) -> p.Reply:
        """The next reply line within ``timeout`` (and max_time), which also bound
        the records after it; ``ERR`` raises."""
        deadline = time.monotonic() + self.timeout
        if self._command_deadline is not None and self._command_deadline < deadline:
            self._link.set_deadline(self._command_deadline, self._command_message)
        else:
            self._link.set_deadline(
                deadline,
                f"the server did not send its whole answer within {self.timeout:g} s",
                f"no answer from the server within {self.timeout:g} s",
            )
        reply = self._next_event()
        if isinstance(reply, p.ErrorReply):
            raise error_for_code(reply.code, reply.text)
        if isinstance(reply, _NOT_REPLIES):
            raise ProtocolError(f"expected a reply, the server sent {reply!r}")  # never
        return reply

    def _records(self, kind: type[_T]) -> builtins.list[_T]:
        """The records of the STATUS or FILES reply just read (within its deadline)."""
        records: builtins.list[_T] = []
        while not isinstance(event := self._next_event(), EndOfReply):
            if not isinstance(event, kind):
                raise ProtocolError(f"expected a record, the server sent {event!r}")  # never
            records.append(event)
        return records

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
            raise ProtocolError(f"asked for {path!r}, the server sent {header.path!r}")
        dest = local_path(dest_dir, header.path)
        first = self._body_start(header.size)
        # The body is bounded by max_time as a whole, and by timeout per silence.
        self._link.set_deadline(self._command_deadline, self._command_message)
        try:
            partial = self._open_partial(dest, header.size, first)
        except SaveError:
            self._skip_trailer()  # a refused body was read and dropped: its trailer too
            raise
        try:
            received = receive_body(self._recv_body_into, first, header.size, partial.fd, progress)
            if received.whole:
                self._body_end()
                # A header without the digest: it follows the body (ERR changed raises Changed).
                expected = header.sha256 or self._trailer_digest()
        except BaseException:
            partial.discard()
            raise
        if received.write_error is not None:
            partial.discard()
            raise SaveError(f"cannot write {dest}: {received.write_error.strerror}")
        if received.sha256 != expected:
            partial.discard()
            raise IntegrityError(
                f"SHA-256 mismatch for {dest.name}",
                expected=expected,
                actual=received.sha256,
            )
        return DownloadResult(partial.commit(), header.size, expected)

    def _trailer_digest(self) -> str:
        """The ``DIGEST`` that follows a body announced without one (v2); ``ERR
        changed`` raises :class:`Changed`: the file changed while it was sent."""
        return self._expect(self._read_reply(), p.DigestReply).sha256

    def _skip_trailer(self) -> None:
        """Read the trailer of a body that was dropped, if one is due, to stay in step."""
        if self._conn.state is ClientState.TRAILER:
            with contextlib.suppress(RequestError):
                self._trailer_digest()

    def _body_start(self, size: int) -> bytes:
        """The first bytes of a body of ``size``: those that came with its header."""
        if size == 0:
            return b""
        event = self._conn.next_event()
        return bytes(event.data) if isinstance(event, BodyData) else b""

    def _recv_body_into(self, view: memoryview) -> int:
        """Receive body bytes straight into ``view``: the connection holds none
        (:meth:`_body_start` took those), so it hands back those very bytes."""
        count = self._link.recv_into(view[: self._conn.body_left])
        self._conn.receive_data(view[:count])  # 0 bytes: the server closed mid-body
        self._conn.next_event()  # BodyData of view[:count]; ConnectionLost after 0 bytes
        return count

    def _body_end(self) -> None:
        event = self._conn.next_event()
        if not isinstance(event, EndOfReply):
            raise ProtocolError(f"expected the end of a body, got {event!r}")  # never

    def _open_partial(self, dest: Path, size: int, first: bytes) -> Partial:
        """Where the body of ``dest`` goes, or the reason it is refused, before any byte is written.

        A refused body is read and dropped when it is small, so the session
        goes on; a larger one is left unread (and the connection closed).
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
                discard_body(self._recv_body_into, first, size)
                self._body_end()
            raise


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
