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
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Concatenate, ParamSpec, TypeVar, assert_never, cast

from .. import protocol as p
from ..digests import Key
from ..errors import (
    BadRequest,
    Changed,
    ConnectionLost,
    Exists,
    FiledockError,
    Forbidden,
    IntegrityError,
    NotFound,
    ProtocolError,
    RequestError,
    SaveError,
    ServerFull,
    TimedOut,
    TooLarge,
    error_for_code,
)
from ..hostport import host_port
from ..protocol.client import (
    NEED_DATA,
    BodyData,
    ClientConnection,
    ClientState,
    EndOfReply,
    ReceivedEvent,
)
from ..version import __version__
from . import arguments as check
from .address import parse_url
from .connection import SocketLink, client_context, tls_context
from .localdigests import LocalDigests, key_of
from .pins import KnownServers
from .remote_stat import FileStat, folder_of, listed, stat_from_listing
from .results import Change as Change
from .results import DownloadResult as DownloadResult
from .results import Outcome as Outcome
from .results import ProgressCallback as ProgressCallback
from .results import ProgressMeter
from .results import TransferProgress as TransferProgress
from .results import TreeSummary as TreeSummary
from .results import UploadOutcome as UploadOutcome
from .results import UploadResult as UploadResult
from .results import UploadSummary as UploadSummary
from .retry import connect_retrying
from .streaming import RemoteFile
from .upload import (
    LocalSource,
    check_remote_folder,
    check_remote_path,
    remote_join,
    tree_files,
)

# What only a transfer uses (download, plan, resume, trees: hashlib, ctypes, the
# ledgers) is imported by the methods that transfer, not here: a one-shot
# ``list`` or ``ping`` starts without it (python3 -X importtime).
if TYPE_CHECKING:
    import ssl  # (nor ssl, loaded only for a TLS connection: see connection.py)

    from .download import Partial, Progress, Received
    from .plan import FilePlan
    from .resume import Checkpoints

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

# An upload's STORED may take, besides ``timeout``, a second per this many bytes
# of the file: the server syncs it to its disk first (a slow USB disk writes
# 10-30 MB/s, and most of the file may still be in its page cache).
STORED_PATIENCE_BYTES = 8 * 1024 * 1024

# What Client.read takes in memory by default: a larger file is streamed or saved.
READ_LIMIT = 64 * 1024 * 1024

# The longest wait a socket takes (about 115 days): longer ones overflow.
MAX_SECONDS = 10_000_000.0

_R = TypeVar("_R", bound=p.Reply)
_T = TypeVar("_T")
_P = ParamSpec("_P")


# Events that come after a reply, never as one.
# What :meth:`Client.send_line` returns: what the method of the line's command returns.
LineResult = (
    str
    | float
    | int
    | bool
    | builtins.list[str]
    | builtins.list[p.ClientRecord]
    | builtins.list[p.FileInfo]
    | p.FileDigest
    | DownloadResult
    | dict[str, int | float]
)

# How long a plain connection waits for the server's NAME before it checks
# whether the server is waiting for TLS instead (a NAME comes within a round trip).
TLS_PROBE_AFTER = 0.25
# Five blank lines: the five bytes of a TLS record header, with no valid record type.
_TLS_PROBE = b"\n" * 5

_NOT_REPLIES = (BodyData, EndOfReply, p.ClientRecord, p.FileInfo, p.StatRecord)

# The states in which a failed download leaves the stream usable.
_BETWEEN_REPLIES = frozenset({ClientState.IDLE, ClientState.AWAIT_REPLY})


_Method = Callable[Concatenate["Client", _P], _T]


class _Unread:
    """A pipelined job whose replies were not read (its outcome may be None)."""


_UNREAD = _Unread()
# One file's transfer: its result, the error it met, or None to start it over.
_Transferred = DownloadResult | FiledockError | None


def _command(method: _Method[_P, _T]) -> _Method[_P, _T]:
    """A public command: whatever way it ends, :meth:`Client._settle` follows."""

    @functools.wraps(method)
    def run(self: Client, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        self._check_not_reading()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._settle()

    return run


class Client:
    """A connection to a filedock server, named and greeted.

    Connecting raises :class:`ServerFull` when the server has no free slot and
    :class:`ConnectionLost` when it cannot be reached. ``connect_timeout``
    bounds the connect (and, as a whole, the TLS handshake). ``tls`` connects
    with TLS: True checks the server's certificate against the system's CAs, a
    path against the CA certificates in that file, an ``ssl.SSLContext`` (see
    :func:`filedock.client.connection.client_context`) is used as it is; None
    or False is plain TCP. ``token`` is the access token for a server that requires one.

    ``timeout`` bounds the whole of each reply but a file's body: a server
    that trickles a reply a byte at a time is given up on too. During a body
    it bounds each silence, and ``max_time`` (seconds, None for no limit)
    bounds the whole command, as curl's ``--max-time`` does. ``max_size``
    (bytes, None for no limit) refuses a file announced larger, before any
    byte is written, as curl's ``--max-filesize`` does; a file is refused too
    when the destination's file system has less room than it needs.
    ``max_line`` is the server's line limit (its ``--max-line``, 4096 bytes by
    default): a request whose line is longer is refused with
    :class:`LineTooLong` before it is sent, instead of the server closing the
    session. Bad
    values (a port outside 1-65535, a negative or NaN time) raise ValueError.

    ``known_servers`` trusts a TLS server on first use, as ssh's
    ``known_hosts`` does (see :mod:`filedock.client.pins`): True for the
    default file (``$XDG_STATE_HOME/filedock/known_servers``), or a path. A
    certificate no trusted CA signed is then pinned the first time
    (``certificate_pinned`` True, ``tls_fingerprint`` its SHA-256) and
    required later: another one raises :class:`CertificateChanged` with both
    fingerprints, unless ``accept_new_certificate`` (which pins it instead).
    It implies ``tls=True`` when ``tls`` is None.

    ``cache_dir`` is where the digests of local files are cached, so an
    unchanged file is not hashed again to tell it is there already (default:
    ``FILEDOCK_CACHE_DIR``, else ``$XDG_CACHE_HOME/filedock``, else
    ``~/.cache/filedock``; one that cannot be used leaves them in memory).

    ``name`` is the name the server gave, ``welcomed_at`` when (aware, UTC),
    ``server`` its WELCOME text (without the ``proto=2`` field), ``protocol``
    the version the server speaks with it (2, or 1 for a server older than
    version 2). Use it in a ``with`` block,
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
        tls: ssl.SSLContext | bool | str | os.PathLike[str] | None = None,
        token: str | None = None,
        max_time: float | None = None,
        max_size: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_line: int = p.DEFAULT_MAX_LINE,
        known_servers: bool | str | os.PathLike[str] | None = None,
        accept_new_certificate: bool = False,
    ) -> None:
        self.host = check.text("host", host)
        self.port = check_port(port)
        self.timeout = check_seconds("timeout", timeout)
        connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self.max_time = None if max_time is None else check_seconds("max_time", max_time)
        self.max_size = None if max_size is None else check_size("max_size", max_size)
        self.max_line = check_line_limit(max_line)
        check.optional_text("token", token)
        check.optional_local_path("cache_dir", cache_dir)
        known = _known_servers(known_servers, tls)
        check.flag("accept_new_certificate", accept_new_certificate)
        if known is not None and tls is None:
            tls = True  # pinning is TLS's: the system's CAs first, then the pin
        self._tls = tls = tls_context(tls)
        self._reading: RemoteFile | None = None  # the file open() returned, while it reads
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("a token cannot be empty or hold white space")
        self._token = token
        self._conn = ClientConnection(p.CLIENT_MAX_LINE, p.MAX_RECORD_BYTES)
        self._chunk = memoryview(bytearray(64 * 1024))
        self._command_deadline: float | None = None
        self._command_message = ""
        self._swept: set[Path] = set()  # folders cleared of old partial files
        self._server_id = f"{host}:{port}"  # what a resume record names
        self.local_digests = LocalDigests(cache_dir)
        self._link = SocketLink(
            host,
            port,
            timeout=self.timeout,
            connect_timeout=connect_timeout,
            tls=tls,
            known=known,
            accept_new=accept_new_certificate,
        )
        # The server certificate's SHA-256 fingerprint (TLS), and whether this
        # connection pinned it in known_servers (first use, or a new one accepted).
        self.tls_fingerprint = self._link.fingerprint
        self.certificate_pinned = self._link.pinned
        self.known_servers = None if known is None else known.path
        try:
            welcome = self._handshake()
        except BaseException:
            self._link.close()
            raise
        self.name, self.server, self.protocol = welcome.name, welcome.server, welcome.protocol
        # The server's ACCEPTED time of this client is its clock at this moment.
        self.welcomed_at = datetime.now(UTC)

    def _handshake(self) -> p.WelcomeReply:
        if self._tls is None and not self._link.readable_within(TLS_PROBE_AFTER):
            # A plain server names a client as soon as it connects; a TLS one says
            # nothing until it has a ClientHello. Blank lines, which a plain server
            # ignores, are a TLS record header a TLS server refuses at once: its
            # close comes now, with the hint below, not after its handshake timeout.
            self._link.send(_TLS_PROBE)
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

    # -- connecting by address --------------------------------------------------

    @classmethod
    def wait_for(
        cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, wait: float, **options: Any
    ) -> Client:
        """``Client(host, port, **options)``, tried again for up to ``wait`` seconds
        while the server is full or not up yet (a refused connection), with a
        pause from 0.1 s doubling to 1 s between tries (as ``curl --retry``);
        then what the last try raised (:class:`ServerFull`,
        :class:`ConnectionLost`). Other failures raise at once.

        >>> with filedock.Client.wait_for("127.0.0.1", port, wait=5.0) as other:
        ...     other.name.startswith("Client")
        True
        """
        check_seconds("wait", wait)
        return connect_retrying(lambda: cls(host, port, **options), wait)

    @classmethod
    def from_url(cls, url: str, *, wait: float | None = None, **options: Any) -> Client:
        """A client of the server ``url`` names: ``filedock://[token@]host[:port]``, or
        ``filedocks://…`` for TLS (trusting the system's CAs, unless ``tls=`` gives a
        context). The port defaults to 50000; the URL's token (percent-encoded if it
        holds ``@``, ``:`` or ``/``) is the greeting's, as ``token=`` would be.
        ``options`` are :class:`Client`'s own; with ``wait``, it waits as
        :meth:`wait_for` does.

        A string that is no such URL raises ValueError, and so does a token both
        in the URL and in ``token=``.

        >>> with filedock.Client.from_url(f"filedock://127.0.0.1:{port}") as other:
        ...     other.host, other.port == port
        ('127.0.0.1', True)
        >>> filedock.Client.from_url("http://127.0.0.1")
        Traceback (most recent call last):
          ...
        ValueError: 'http://127.0.0.1': the scheme must be filedock:// or filedocks://, not http://
        """
        address = parse_url(check.text("url", url))
        if address.token is not None:
            if options.get("token") is not None:
                raise ValueError("a token in the URL and in token= too: give it once")
            options["token"] = address.token
        if address.tls and options.get("tls") is None:
            options["tls"] = client_context()
        port = address.port or DEFAULT_PORT
        if wait is not None:
            return cls.wait_for(address.host, port, wait=wait, **options)
        return cls(address.host, port, **options)

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
    def stats(self) -> dict[str, int | float]:
        """The server's counters and gauges now, by name, in the server's order
        (PROTOCOL.md names each): a whole number, or a decimal for a figure
        such as ``uptime_seconds``. A labelled counter comes as its sum and
        each value's own (``connections_rejected``, ``connections_rejected_full``).

        Raises :class:`~filedock.errors.Forbidden` for a server that speaks
        protocol 1 (it has no ``STATS``: it would echo the line).

        >>> figures = client.stats()
        >>> figures["clients_connected"], figures["requests_stats"]  # this one counted
        (1, 1)
        """
        if self.protocol < 2:
            raise Forbidden(f"the server ({self.server}) speaks protocol 1, which has no STATS")
        self._expect(self._execute(p.Stats()), p.StatsReply)
        return {record.name: record.value for record in self._records(p.StatRecord)}

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
        folder = check.optional_text("folder", folder)
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
        check.text("path", path)
        reply = self._expect(self._execute(p.Hash(path)), p.HashReply)
        if reply.file.path != path:
            raise ProtocolError(f"asked for {path!r}, the server sent {reply.file.path!r}")
        return reply.file

    def open(self, path: str, *, progress: ProgressCallback | None = None) -> RemoteFile:
        """Open the server's ``path`` for reading, as a stream: a :class:`RemoteFile`.

        One ``GET``; the body is read as the caller reads it (``read(n)``,
        ``readinto``, ``iter_bytes()``), hashed as it comes and checked against
        the file's SHA-256 before its last bytes are handed out: the read that
        reaches the end raises :class:`IntegrityError` on a mismatch (and
        :class:`Changed` when the file changed while it was sent). Until the
        file is read to its end or closed, the client takes no other command
        (RuntimeError). Closed early, the rest is read and dropped when it is
        at most 64 MiB, so the connection goes on; a larger rest closes the
        connection (the next command raises :class:`ConnectionLost`). A
        reader that stops reading for longer than the server's send timeout
        is dropped by the server. ``max_size`` does not apply (nothing is
        written); ``progress`` gets a :class:`TransferProgress` as bytes are
        read. Raises what :meth:`get` raises when the server refuses.

        >>> with client.open("sample.txt") as f:
        ...     f.read()
        b'hello\\n'
        >>> with client.open("sample.txt") as f:
        ...     [chunk for chunk in f.iter_bytes(4)]
        [b'hell', b'o\\n']
        """
        check.text("path", path)
        check.callback("progress", progress)
        self._check_not_reading()
        try:
            header = self._expect(self._execute(p.Get(path)), p.FileReply)
            if header.path != path:
                raise ProtocolError(f"asked for {path!r}, the server sent {header.path!r}")
            first = self._body_start(header.size)
        except BaseException:
            self._settle()
            raise
        self._link.set_deadline(None, "")  # the reader sets the pace: each silence is bounded
        counter = ProgressMeter(progress).file(path, 0, header.size)
        self._reading = RemoteFile(
            path, header.size, header.sha256, first, _StreamSource(self), counter
        )
        return self._reading

    @_command
    def read(
        self,
        path: str,
        *,
        limit: int | None = READ_LIMIT,
        progress: ProgressCallback | None = None,
    ) -> bytes:
        """The server's ``path``, whole, in memory, verified.

        A file over ``limit`` bytes (64 MiB by default; None for no limit) is
        refused with :class:`TooLarge` before its body is read (the body is
        read and dropped, so the connection goes on, up to 64 MiB; past that
        the connection is closed): use :meth:`open` or :meth:`get` for it.
        Raises what :meth:`open` raises.

        >>> client.read("sample.txt")
        b'hello\\n'
        """
        check.text("path", path)
        if limit is not None:
            check_size("limit", limit)
        check.callback("progress", progress)
        with self.open(path, progress=progress) as remote:
            if limit is not None and remote.size > limit:
                raise TooLarge(
                    f"{path} is {remote.size} bytes, over the read limit of {limit} bytes: "
                    "use open() to stream it, or get() to save it"
                )
            return remote.read()

    @_command
    def stat(self, path: str, *, digest: bool = False) -> FileStat:
        """The server file ``path``'s size and mtime: a :class:`FileStat`.

        Read from ``LIST`` of its folder, so the server hashes nothing, and
        ``sha256`` is None; with ``digest``, from ``HASH``, and ``sha256`` is
        the file's (the server hashes it if it had not yet). Raises
        :class:`NotFound` for no such file (a folder says so in the text).
        A version 1 server: its whole ``LIST`` is read, and ``digest`` raises
        :class:`Forbidden` (it has no ``HASH``).

        >>> client.stat("sample.txt").size
        6
        >>> client.stat("sample.txt", digest=True).sha256[:12]
        '5891b5b522d5'
        """
        check.text("path", path)
        check.flag("digest", digest)
        if digest:
            if self.protocol < 2:
                raise Forbidden(f"the server ({self.server}) speaks protocol 1, which has no HASH")
            return FileStat.of_digest(self.hash(path))
        return stat_from_listing(path, self._folder_listing(path))

    @_command
    def exists(self, path: str) -> bool:
        """Whether the server has ``path``: a file it serves, or a folder holding
        files (what :meth:`list` shows). One ``LIST`` of its folder (a version 1
        server: its whole ``LIST``); nothing is hashed.

        >>> client.exists("sample.txt"), client.exists("nope.txt")
        (True, False)
        """
        check.text("path", path)
        return listed(path, self._folder_listing(path))

    def _folder_listing(self, path: str) -> builtins.list[p.FileInfo]:
        """The listing that holds ``path``: its folder's (a version 1 server: all)."""
        return self._listing(None if self.protocol < 2 else folder_of(path))

    @_command
    def get_range(
        self,
        path: str,
        offset: int,
        sha256: str,
        sink: BinaryIO,
        *,
        progress: ProgressCallback | None = None,
    ) -> p.PartReply:
        """Write ``path``'s bytes from ``offset`` to its end into ``sink``, if the
        server's file still has the SHA-256 ``sha256``; the ``PART`` header.

        The part alone cannot be checked: whoever joins it to the bytes before
        ``offset`` checks the whole file's digest. Raises :class:`Changed`
        when the file is not the one with ``sha256`` any more,
        :class:`BadRange` when ``offset`` is past its end, what :meth:`get` raises otherwise, and
        :class:`SaveError` when ``sink`` cannot be written (the connection is
        closed then). ``progress`` gets a :class:`TransferProgress` whose
        ``done`` counts from ``offset``.

        >>> import io
        >>> sink = io.BytesIO()
        >>> part = client.get_range("sample.txt", 2, client.hash("sample.txt").sha256, sink)
        >>> part.offset, part.size, sink.getvalue()
        (2, 6, b'llo\\n')
        """
        check.text("path", path)
        check.offset("offset", offset)
        check.sha256("sha256", sha256)
        check.writable("sink", sink)
        check.callback("progress", progress)
        request = p.Range(offset, sha256, path)
        header = self._part_header(request)
        total = header.length
        first = self._body_start(total)
        self._link.set_deadline(self._command_deadline, self._command_message)
        counter = ProgressMeter(progress).file(path, offset, header.size)
        done = 0
        try:
            view = memoryview(first)
            while True:
                sink.write(view)
                done += len(view)
                if counter is not None:
                    counter(done, total)
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
        check.text("text", text)
        return self._expect(self._execute(p.Say(text)), p.AckReply).text

    @_command
    def get(
        self,
        path: str,
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download ``path`` into ``dest_dir`` (same relative path), verified; the saved path.

        As :meth:`download` with its defaults: resumed, skipped when already
        there. Raises :class:`NotFound` / :class:`Forbidden` when the server
        refuses, :class:`IntegrityError` when the body does not match its
        SHA-256, :class:`ProtocolError` when the server names another or an
        unsafe path, :class:`SaveError` when the file cannot be written
        locally. ``progress`` is called with a :class:`TransferProgress` as
        the bytes arrive.

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
        save_as: str | os.PathLike[str] | None = None,
        resume: bool = True,
        no_clobber: bool = False,
        progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Like :meth:`get`, saying what was done: a :class:`DownloadResult`.

        ``save_as`` names the local file instead of ``dest_dir/<path>``. A
        missing file is fetched at once. A download cut short (Ctrl-C, a lost
        connection, the client killed) leaves a hidden partial file and a
        resume record beside the destination, and the next download of the
        file continues it with ``RANGE`` (``resume=False``: starts again); if
        the server's file changed meanwhile, or the partial does not verify,
        it is fetched whole once, and ``restarted`` says why. A destination
        already there with the server's size and SHA-256 is not fetched
        (SKIPPED); a different one is replaced atomically (REPLACED), or kept
        with ``no_clobber`` (KEPT). The saved or skipped file gets the
        server's mtime.

        >>> result = client.download("sample.txt", "downloads")
        >>> result.size, result.sha256[:12], result.outcome
        (6, '5891b5b522d5', <Outcome.FETCHED: 'fetched'>)
        >>> client.download("sample.txt", "downloads").outcome
        <Outcome.SKIPPED: 'skipped'>
        """
        check.text("path", path)
        _check_transfer(dest_dir, resume, no_clobber, progress)
        save_as = check.optional_local_path("save_as", save_as)
        dest = None if save_as is None else Path(save_as)
        plan = self._plan_for(path, dest_dir, dest)
        [outcome] = self._fetch([plan], resume, no_clobber, ProgressMeter(progress), dest_dir)
        if isinstance(outcome, FiledockError):
            raise outcome
        return outcome

    @_command
    def get_many(
        self,
        paths: Iterable[str],
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        resume: bool = True,
        no_clobber: bool = False,
        progress: ProgressCallback | None = None,
        listing: Iterable[p.FileInfo] = (),
    ) -> builtins.list[DownloadResult | FiledockError]:
        """Download several files over this connection, pipelined: one outcome per path, in order.

        Each file as :meth:`download` does it (resumed, skipped, replaced or
        kept). The ``HASH`` lines the decisions need go out first, then the
        ``GET`` and ``RANGE`` lines together (up to :data:`PIPELINE_BYTES`
        of requests in flight, so neither side can block the other), and the
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
        ``progress`` gets a :class:`TransferProgress` as bytes arrive.
        ``listing``: records a ``LIST`` gave of some of the paths; their
        size and mtime are taken from there, as :meth:`download_tree` does,
        so no ``HASH`` follows their ``GET`` for the mtime.

        >>> outcomes = client.get_many(["sample.txt", "nope.txt"], "downloads")
        >>> [type(outcome).__name__ for outcome in outcomes]
        ['DownloadResult', 'NotFound']
        >>> outcomes[0].path.as_posix()
        'downloads/sample.txt'
        """
        paths = check.paths("paths", paths)
        _check_transfer(dest_dir, resume, no_clobber, progress)
        listed = {info.path: info for info in listing}
        plans = [self._plan_for(path, dest_dir, None, listed.get(path)) for path in paths]
        meter = ProgressMeter(progress, len(plans))
        return self._fetch(plans, resume, no_clobber, meter, dest_dir)

    @_command
    def download_tree(
        self,
        folder: str | None,
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        resume: bool = True,
        no_clobber: bool = False,
        progress: ProgressCallback | None = None,
    ) -> TreeSummary:
        """Download every file under ``folder`` (None or "": all), each saved at
        ``dest_dir/<server path>`` as :meth:`get_many` saves it; a summary.

        One ``LIST <folder>``; a folder that does not exist gives an empty summary.

        >>> summary = client.download_tree("", "downloads")
        >>> summary.fetched, summary.skipped, summary.bytes
        (1, 0, 6)
        """
        from .download import local_path
        from .plan import FilePlan

        check.optional_text("folder", folder)
        _check_transfer(dest_dir, resume, no_clobber, progress)
        files = self._listing(folder)
        root = Path(dest_dir)
        plans = [
            FilePlan(info.path, local_path(root, info.path), info, root=root) for info in files
        ]
        return self._sync(plans, resume, no_clobber, progress, dest_dir=root)

    @_command
    def mirror(
        self,
        folder: str | None,
        dest: str | os.PathLike[str],
        *,
        delete: bool = False,
        dry_run: bool = False,
        resume: bool = True,
        progress: ProgressCallback | None = None,
        on_change: Callable[[Change], None] | None = None,
    ) -> TreeSummary:
        """Make ``dest`` hold the files under ``folder`` (None or "": the whole
        repository), at their paths relative to ``folder``; a summary.

        What is missing or different is fetched (pipelined, resumed where a
        partial was left), what is identical skipped. With ``delete``, local
        files the server does not have are deleted, and folders left empty
        (never hidden ones: partial files and caches stay); a folder with no
        files on the server then raises :class:`NotFound` and deletes nothing
        (a misspelt folder would empty ``dest``). With ``dry_run``
        nothing on disk changes: the summary says what would be done.
        ``on_change`` is called with each :class:`Change` as it is decided.

        >>> summary = client.mirror(None, "copy")
        >>> [change.action for change in summary.changes], summary.fetched
        (['fetch'], 1)
        >>> client.mirror(None, "copy").skipped
        1
        """
        from . import trees
        from .download import local_path
        from .plan import FilePlan

        check.optional_text("folder", folder)
        _check_transfer(dest, resume, False, progress, dest_name="dest")
        check.flag("delete", delete)
        check.flag("dry_run", dry_run)
        check.callback("on_change", on_change)
        files = self._listing(folder)
        if delete and not files:
            # A folder misspelt, a file's path, an emptied server: deleting all
            # of dest would be the answer. Refused, as rsync refuses a missing source.
            where = repr(folder) if folder and folder.strip("/") else "the repository"
            raise NotFound(f"no files under {where} on the server: nothing deleted")
        root = Path(dest)
        prefix = f"{folder.strip('/')}/" if folder and folder.strip("/") else ""
        for info in files:
            if not info.path.startswith(prefix):
                raise ProtocolError(f"asked for the files under {prefix!r}, got {info.path!r}")
        plans = [
            FilePlan(info.path, local_path(root, info.path[len(prefix) :]), info, root=root)
            for info in files
        ]
        unreadable: builtins.list[OSError] = []
        extras = trees.local_extras(root, plans, unreadable) if delete else []
        return self._sync(
            plans,
            resume,
            False,
            progress,
            dest_dir=root,
            dry_run=dry_run,
            extras=extras,
            unreadable=unreadable,
            on_change=on_change,
        )

    def _listing(self, folder: str | None) -> builtins.list[p.FileInfo]:
        folder = folder.strip("/") if folder else None
        self._expect(self._execute(p.ListFiles(folder or None)), p.FilesReply)
        return self._records(p.FileInfo)

    def _sync(
        self,
        plans: builtins.list[FilePlan],
        resume: bool,
        no_clobber: bool,
        progress: ProgressCallback | None,
        *,
        dest_dir: Path,
        dry_run: bool = False,
        extras: builtins.list[Path] | None = None,
        unreadable: builtins.list[OSError] | None = None,
        on_change: Callable[[Change], None] | None = None,
    ) -> TreeSummary:
        """Fetch what a folder's download or mirror needs; delete ``extras``; the summary."""
        from . import trees

        resume = resume and self.protocol >= 2  # a version 1 server has no RANGE
        self._begin_command()
        with _letting_go_if_cut(plans):
            self._decide(plans, resume, no_clobber, dry_run=dry_run)
            changes = trees.Changes(on_change)
            for plan in plans:
                changes.planned(plan)
            if dry_run:
                for plan in plans:
                    plan.release()
                results: builtins.list[DownloadResult | FiledockError] = []
                received = 0
            else:
                meter = ProgressMeter(progress, len(plans), trees.bytes_to_fetch(plans))
                results = self._transfer(plans, meter, dest_dir, resume)
                self.local_digests.flush()
                received = meter.bytes_done
        for path in extras or []:
            changes.delete(path, dry_run=dry_run)
        for exc in unreadable or []:
            changes.unreadable(exc)
        if not dry_run and extras:
            trees.remove_empty_folders(dest_dir, extras)
        return changes.summary(plans, results, received)

    def _plan_for(
        self,
        path: str,
        dest_dir: str | os.PathLike[str],
        dest: Path | None,
        listed: p.FileInfo | None = None,
    ) -> FilePlan:
        """The plan of one named file (``listed``: what a listing said of it); its
        destination is left to the server's answer when the path could not be
        saved here as it is (the server refuses it)."""
        from .download import local_path
        from .plan import FilePlan

        if dest is not None:
            return FilePlan(path, dest)  # the user named the file: its folders are theirs
        try:
            return FilePlan(path, local_path(dest_dir, path), listed, root=Path(dest_dir))
        except ProtocolError:
            return FilePlan(path, None)

    def _fetch(
        self,
        plans: builtins.list[FilePlan],
        resume: bool,
        no_clobber: bool,
        meter: ProgressMeter,
        dest_dir: str | os.PathLike[str],
    ) -> builtins.list[DownloadResult | FiledockError]:
        resume = resume and self.protocol >= 2  # a version 1 server has no RANGE
        self._begin_command()
        with _letting_go_if_cut(plans):
            self._decide(plans, resume, no_clobber)
            results = self._transfer(plans, meter, dest_dir, resume)
        self.local_digests.flush()
        return results

    def _decide(
        self,
        plans: builtins.list[FilePlan],
        resume: bool,
        no_clobber: bool,
        *,
        dry_run: bool = False,
    ) -> None:
        """Look at each destination; HASH what has something local to compare; decide.

        The partials' prefixes are hashed while the HASH replies are on their way.
        """
        from .plan import FolderIndex, decide, look

        index = FolderIndex() if len(plans) > 1 else None
        for plan in plans:
            try:
                look(plan, self._server_id, resume=resume, index=index, dry_run=dry_run)
            except SaveError as exc:
                plan.error = exc
        asking = [plan for plan in plans if plan.error is None and plan.needs_hash()]
        if self.protocol < 2:
            asking = []  # no HASH: every file is fetched whole
        digests = self._pipeline(
            [[p.Hash(plan.path)] for plan in asking],
            lambda index: self._hash_reply(asking[index].path),
        )
        for plan, digest in zip(asking, digests, strict=True):
            if isinstance(digest, FiledockError):
                plan.error = digest
            else:
                plan.remote = digest
        for plan in plans:
            decide(plan, self.local_digests, no_clobber=no_clobber)

    def _hash_reply(self, path: str) -> p.FileDigest | FiledockError:
        """The reply to ``HASH path``: its digest, or the error it met (the stream in step)."""
        try:
            digest = self._expect(self._read_reply(), p.HashReply).file
        except FiledockError as exc:
            if self._conn.state not in _BETWEEN_REPLIES:
                raise
            return exc
        if digest.path != path:  # another file's digest would decide this one
            return ProtocolError(f"asked for {path!r}, the server sent {digest.path!r}")
        return digest

    def _transfer(
        self,
        plans: builtins.list[FilePlan],
        meter: ProgressMeter,
        dest_dir: str | os.PathLike[str],
        resume: bool,
    ) -> builtins.list[DownloadResult | FiledockError]:
        """Carry the plans out: GET and RANGE pipelined, then once more for those
        that had to start over (a partial that did not verify, a file changed)."""
        from .plan import Action, FilePlan

        outcomes: builtins.list[DownloadResult | FiledockError | None] = [None] * len(plans)
        moving: builtins.list[int] = []
        for index, plan in enumerate(plans):
            if plan.action is Action.FAIL:
                plan.release()
                assert plan.error is not None
                outcomes[index] = plan.error
                meter.finished()
            elif plan.action in (Action.SKIP, Action.KEEP):
                outcomes[index] = self._settled(plan)
                meter.finished()
            else:
                moving.append(index)
        for attempt in range(2):
            if not moving:
                break
            batch = [plans[index] for index in moving]

            def read(at: int, batch: builtins.list[FilePlan] = batch) -> _Transferred:
                return self._read_transfer(batch[at], meter, dest_dir, resume)

            received = self._pipeline(
                [self._requests(plan) for plan in batch],
                read,
                on_abort=functools.partial(_each, FilePlan.release, batch),
            )
            again = []
            for index, outcome in zip(moving, received, strict=True):
                if outcome is None and attempt == 0:
                    again.append(index)  # the partial was dropped: fetched whole
                    continue
                # Only a resume starts over, and the second try is a whole GET.
                assert outcome is not None, "a whole download never asks to start over"
                outcomes[index] = outcome
                meter.finished()
            moving = again
        return [outcome for outcome in outcomes if outcome is not None]

    def _requests(self, plan: FilePlan) -> builtins.list[p.Request]:
        from .plan import Action

        if plan.action is Action.RESUME and plan.partial is not None and plan.remote is not None:
            plan.partial.truncate(plan.prefix_length)  # the part is written from there
            return [p.Range(plan.prefix_length, plan.remote.sha256, plan.path)]
        if plan.partial is not None or plan.stale_record:  # the GET starts it again
            plan.drop_partial()
        plan.action = Action.FETCH
        if plan.mtime_ns() is None and self.protocol >= 2:
            return [p.Get(plan.path), p.Hash(plan.path)]  # the mtime, from a cache warm by then
        return [p.Get(plan.path)]

    def _read_transfer(
        self,
        plan: FilePlan,
        meter: ProgressMeter,
        dest_dir: str | os.PathLike[str],
        resume: bool,
    ) -> DownloadResult | FiledockError | None:
        """Read the replies of one plan's requests: its result, the error it met
        (when the stream is still in step), or None when it must start over: a
        resume whose file changed (``ERR changed`` to the RANGE) or whose whole
        did not verify. A whole GET is never started over (``ERR changed`` after
        its body is its outcome)."""
        from .plan import CHANGED_ON_SERVER, Action

        if plan.action is Action.RESUME:
            try:
                result = self._resume(plan, meter)
            except Changed:
                if self._conn.state not in _BETWEEN_REPLIES:
                    raise
                plan.drop_partial(CHANGED_ON_SERVER)
                return None
            except FiledockError as exc:
                plan.release()
                if self._conn.state not in _BETWEEN_REPLIES:
                    raise
                return exc
            if result is None:
                return None
            return replace(result, outcome=plan.outcome(), restarted=plan.restarted)
        asked_mtime = plan.mtime_ns() is None and self.protocol >= 2
        try:
            header = self._expect(self._read_reply(), p.FileReply)
            result = self._receive(
                plan.path,
                header,
                plan.dest,
                dest_dir,
                meter,
                resume=resume,
                mtime_ns=plan.mtime_ns(),
            )
        except FiledockError as exc:
            if self._conn.state not in _BETWEEN_REPLIES:
                raise
            if asked_mtime:
                self._hash_reply(plan.path)  # the HASH after the GET, refused as well
            return exc
        if asked_mtime:
            result = self._stamp(result, self._hash_reply(plan.path))
        return replace(result, outcome=plan.outcome(), restarted=plan.restarted)

    def _resume(self, plan: FilePlan, meter: ProgressMeter) -> DownloadResult | None:
        """Read a RANGE reply into the plan's partial; None if the whole did not verify."""
        from .plan import DAMAGED_PARTIAL
        from .resume import Checkpoints, new_record

        partial, remote = plan.partial, plan.remote
        assert partial is not None
        assert remote is not None
        offset = plan.prefix_length
        header = self._part_header(p.Range(offset, remote.sha256, plan.path), sent=True)
        first = self._body_start(header.length)
        self._link.set_deadline(self._command_deadline, self._command_message)
        before = plan.record or new_record(self._server_id, plan.path, 0, None)
        record = replace(
            before,
            size=header.size,
            sha256=header.sha256,
            # Not the offset: the partial's end may not be on the disk yet (the
            # first checkpoint's fsync makes it so).
            durable=min(offset, before.durable),
        )
        # It keeps the record's hashed prefix only if the partial still holds all of it.
        checkpoint = Checkpoints(partial.fd, partial.dest, record, offset)
        checkpoint.record.save(partial.dest)
        plan.partial = None  # from here, this method lets go of it, whatever happens
        counter = meter.file(plan.path, offset, header.size)
        # The prefix is checked beside the transfer, not before it: its hashed part
        # against its tags, the hash going on from its saved state; the rest hashed back.
        received = self._body_into(
            partial, first, header.length, counter, meter, rehash=offset, checkpoint=checkpoint
        )
        if received.sha256 != header.sha256:
            self._drop(partial)
            plan.restarted = DAMAGED_PARTIAL
            return None
        saved = self._save(partial, header.size, header.sha256, plan.mtime_ns(), had_record=True)
        return replace(saved, resumed_from=offset)

    def _part_header(self, request: p.Range, *, sent: bool = False) -> p.PartReply:
        reply = self._read_reply() if sent else self._execute(request)
        header = self._expect(reply, p.PartReply)
        if (header.path, header.offset, header.sha256) != (
            request.path,
            request.offset,
            request.sha256,
        ):
            raise ProtocolError(f"asked for {request!r}, the server sent {header!r}")
        return header

    def _settled(self, plan: FilePlan) -> DownloadResult:
        """The result of a file skipped or kept: nothing fetched. A skipped one
        gets the server's mtime (and its digest is cached under its new key); a
        kept one reports its own size, and its digest if it was looked at."""
        from .plan import Action

        dest, st, remote = plan.dest, plan.lstat, plan.remote
        assert dest is not None
        assert st is not None
        if plan.action is Action.KEEP:
            plan.release()
            digest = self.local_digests.lookup(st) if stat.S_ISREG(st.st_mode) else None
            return DownloadResult(dest, st.st_size, digest or "", Outcome.KEPT)
        assert remote is not None
        plan.drop_partial()  # a partial beside an identical file is of no use
        mtime_ns = plan.mtime_ns()
        if mtime_ns is not None and st.st_mtime_ns != mtime_ns:
            with contextlib.suppress(OSError):
                os.utime(dest, ns=(st.st_atime_ns, mtime_ns), follow_symlinks=False)
                self.local_digests.put(os.lstat(dest), remote.sha256)
        return DownloadResult(dest, remote.size, remote.sha256, Outcome.SKIPPED)

    def _stamp(
        self, result: DownloadResult, digest: p.FileDigest | FiledockError
    ) -> DownloadResult:
        """Give a saved file the server's mtime from the HASH read after it (if
        that HASH is of the same bytes), and cache its digest under its new key."""
        if isinstance(digest, FiledockError):
            return result
        if (digest.size, digest.sha256) == (result.size, result.sha256):
            mtime_ns = int(digest.mtime.timestamp()) * 1_000_000_000
            with contextlib.suppress(OSError):
                os.utime(result.path, ns=(time.time_ns(), mtime_ns), follow_symlinks=False)
                self.local_digests.put(os.lstat(result.path), result.sha256)
        return result

    def _pipeline(
        self,
        jobs: builtins.list[builtins.list[p.Request]],
        read: Callable[[int], _T | FiledockError],
        after_first_send: Callable[[], object] | None = None,
        on_abort: Callable[[], object] | None = None,
    ) -> builtins.list[_T | FiledockError]:
        """Send each job's requests and read its replies with ``read(index)``, in
        order, up to :data:`PIPELINE_BYTES` of requests in flight.

        A job whose line cannot travel gets :class:`BadRequest`. When the stream
        falls out of step, its error is the outcome of every job left.
        """
        outcomes: builtins.list[_T | FiledockError | _Unread] = [_UNREAD] * len(jobs)
        lines: builtins.list[tuple[int, int]] = []  # (job, bytes of its lines)
        for index, requests in enumerate(jobs):
            try:
                for request in requests:
                    self._fitting(request)
                lines.append((index, sum(len(p.encode_request(r)) for r in requests)))
            except ValueError:  # a line feed: it cannot travel on one line
                path = getattr(requests[0], "path", "")
                outcomes[index] = BadRequest(f"a path cannot hold a line break: {path!r}")
            except LineTooLong as exc:
                outcomes[index] = exc
        in_flight: deque[tuple[int, int]] = deque()  # (job, request bytes) sent, not answered
        in_flight_bytes = 0
        next_line = 0
        current: int | None = None  # the job whose replies are being read
        try:
            while next_line < len(lines) or in_flight:
                # Topped up once half the budget is answered: few, full sends
                # rather than one small send per reply.
                if in_flight_bytes <= PIPELINE_BYTES // 2:
                    batch: builtins.list[bytes] = []
                    while next_line < len(lines) and (
                        in_flight_bytes + lines[next_line][1] <= PIPELINE_BYTES or not in_flight
                    ):
                        index, size = lines[next_line]
                        batch.extend(self._conn.send(request) for request in jobs[index])
                        in_flight.append((index, size))
                        in_flight_bytes += size
                        next_line += 1
                    if batch:
                        self._link.send(b"".join(batch))
                if after_first_send is not None:
                    after_first_send()
                    after_first_send = None
                current, size = in_flight.popleft()
                in_flight_bytes -= size
                outcomes[current] = read(current)
                current = None
        except FiledockError as exc:  # the stream is out of step: no more replies can be read
            if on_abort is not None:
                on_abort()
            rest: FiledockError = exc
            if current is not None and isinstance(exc, SaveError):
                # Closed to stop receiving that file: the others were not refused.
                outcomes[current] = exc
                after = getattr(jobs[current][0], "path", "")
                rest = ConnectionLost(
                    f"not fetched: the connection was closed after {after!r} ({exc})"
                )
            return [rest if isinstance(outcome, _Unread) else outcome for outcome in outcomes]
        except BaseException:
            if on_abort is not None:
                on_abort()
            raise
        if after_first_send is not None:
            after_first_send()
        return [outcome for outcome in outcomes if not isinstance(outcome, _Unread)]

    @_command
    def send_line(
        self,
        text: str,
        dest_dir: str | os.PathLike[str] = "downloads",
        *,
        progress: ProgressCallback | None = None,
    ) -> LineResult:
        """Send a line as a person typed it at the prompt; what the method of that
        command returns.

        The line is read by the rule the server reads it by (the protocol's
        command table): ``"ping"`` returns :meth:`ping`'s round trip, ``"who"``
        the names, ``"status"`` the records, ``"stats"`` the counters, ``"list docs"`` the files,
        ``"hash x"`` the :class:`FileDigest`, ``"get x"`` the
        :class:`DownloadResult` (into ``dest_dir``), ``"say x"`` and any line
        that is no command the echoed text, and ``"exit"`` whether BYE came
        (the connection is closed then). A line that is no command but names
        one of the server's files is that file: the server sends it, and the
        result is its :class:`DownloadResult` (fetched whole: there was no
        asking first). Raises what that method raises; ``ValueError`` before
        anything is sent for a blank line, a line break, and ``range`` and
        ``put`` lines (they need a file: :meth:`get_range`, :meth:`upload`).

        >>> client.send_line("hello there")
        'hello there'
        >>> client.send_line("ping") < 1.0
        True
        >>> client.send_line("sample.txt", "downloads")
        DownloadResult(path=PosixPath('downloads/sample.txt'), size=6, sha256='...)
        """
        typed = check.line(text).strip(p.LINE_PADDING)  # as the server strips it
        check.local_path("dest_dir", dest_dir)
        check.callback("progress", progress)
        request = p.parse_request(typed)
        match request:
            case p.Ping():
                return self.ping()
            case p.Who():
                return self.who()
            case p.Uptime():
                return self.uptime()
            case p.About():
                return self.about()
            case p.Help():
                return self.help()
            case p.Status():
                return self.status()
            case p.Stats():
                return self.stats()
            case p.ListFiles(folder):
                return self.list(folder)
            case p.Hash(path):
                return self.hash(path)
            case p.Get(path):
                return self.download(path, dest_dir, progress=progress)
            case p.Say(message):
                return self.say(message)
            case p.Exit():
                return self.exit()
            case p.Range() | p.Put():
                word = "get_range()" if isinstance(request, p.Range) else "upload()"
                raise ValueError(f"{typed.split()[0]} needs a local file: use {word}")
            case p.Message():
                return self._message(typed, dest_dir, progress)
            case _:
                assert_never(request)

    def _message(
        self,
        text: str,
        dest_dir: str | os.PathLike[str],
        progress: ProgressCallback | None,
    ) -> str | DownloadResult:
        """A line that is no command: its echo, or the file it names."""
        from .download import local_path

        reply = self._execute(p.Message(text))
        if isinstance(reply, p.AckReply):
            return reply.text
        header = self._expect(reply, p.FileReply)
        try:
            replacing = os.path.lexists(local_path(dest_dir, text))
        except ProtocolError:
            replacing = False  # _receive says why
        meter = ProgressMeter(progress)
        result = self._receive(text, header, None, dest_dir, meter, resume=self.protocol >= 2)
        return replace(result, outcome=Outcome.REPLACED) if replacing else result

    @_command
    def upload(
        self,
        local: str | os.PathLike[str],
        remote_path: str,
        *,
        replace: bool = False,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        """Send the local file ``local`` to the server as ``remote_path``, verified;
        an :class:`UploadResult` once the server says it is stored.

        The file is hashed first (an unchanged file's digest comes from the
        local digest cache), then ``PUT`` announces its size and SHA-256; the
        server checks the bytes it receives against them and places the file
        under its name only then. A path that exists is refused unless
        ``replace``, but when the server's file there has the same size and
        SHA-256: nothing is sent then (outcome SKIPPED). An upload cut short
        (Ctrl-C, a lost connection, the client killed) leaves its part on the
        server, and the same upload later sends only the rest (outcome
        RESUMED, ``resumed_from`` the bytes it held).

        Raises, before any byte of the body is sent, :class:`Forbidden` (the
        server takes no uploads, a read-only token, a path it would not
        serve; a version 1 server too), :class:`Exists`, :class:`UploadTooLarge`,
        :class:`NoSpace`, :class:`BadRequest` (a path that cannot travel),
        :class:`UnreadableFile` (the local file); after the body,
        :class:`Changed` when the local file changed while it was sent (the
        server placed nothing), :class:`UploadCorrupted` when the bytes did not
        arrive as they were sent, :class:`NoSpace` when the disk filled.
        ``progress`` gets a :class:`TransferProgress` as the bytes go.

        >>> result = client.upload("notes.txt", "inbox/notes.txt")
        >>> result.size, result.outcome
        (6, <UploadOutcome.STORED: 'stored'>)
        >>> client.upload("notes.txt", "inbox/notes.txt").outcome  # the server has it
        <UploadOutcome.SKIPPED: 'skipped'>
        >>> client.upload("notes.txt", "sample.txt")  # another file is there
        Traceback (most recent call last):
          ...
        filedock.errors.Exists: exists: ...
        """
        check.local_path("local", local)
        check.text("remote_path", remote_path)
        check.flag("replace", replace)
        check.callback("progress", progress)
        check_remote_path(remote_path)
        self._check_uploads()
        self._begin_command()
        with LocalSource.open(local, self.local_digests) as source:
            return self._put(source, remote_path, replace, ProgressMeter(progress))

    @_command
    def upload_tree(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str | None,
        *,
        replace: bool = False,
        progress: ProgressCallback | None = None,
    ) -> UploadSummary:
        """Send every file under the local folder ``local_dir`` to the server,
        under ``remote_dir`` ("" or None: the top) at the same relative path;
        a summary with one outcome per file.

        Hidden files and folders are left out, and symlinks but those to a
        file inside ``local_dir`` (see :func:`filedock.client.upload.tree_files`).
        The ``HASH`` of every file goes out first, pipelined: a file the
        server has with the same size and SHA-256 is not sent (SKIPPED). The
        others are sent one after the other as :meth:`upload` sends one, each
        ``PUT`` going out as soon as the body before it has (it travels while
        the server syncs that file, not after its ``STORED``); a
        refusal is that file's outcome (:class:`Exists` for a different file
        there, without ``replace``) and the others go on. If the connection
        breaks, its error is the outcome of every file not sent yet.

        >>> summary = client.upload_tree("photos", "backup/photos")
        >>> summary.stored, summary.skipped, summary.failed
        (2, 0, 0)
        >>> client.upload_tree("photos", "backup/photos").skipped
        2
        """
        check.local_path("local_dir", local_dir)
        check.optional_text("remote_dir", remote_dir)
        check.flag("replace", replace)
        check.callback("progress", progress)
        check_remote_folder(remote_dir)
        self._check_uploads()
        self._begin_command()
        found = tree_files(Path(local_dir))
        remote = [remote_join(remote_dir, relative) for _, relative in found]
        outcomes: builtins.list[UploadResult | FiledockError | None] = [None] * len(found)
        digests: dict[int, tuple[int, str]] = {}
        scanned: dict[int, tuple[Key, str]] = {}  # so a file unchanged since is not hashed again
        for index, (local, _) in enumerate(found):
            try:
                with LocalSource.open(local, self.local_digests) as source:
                    digests[index] = (source.size, source.sha256)
                    scanned[index] = (key_of(source.stat), source.sha256)
            except FiledockError as exc:
                outcomes[index] = exc
        asking = [index for index in digests if _sendable(remote[index])]
        asked = set(asking)
        known = self._pipeline(
            [[p.Hash(remote[index])] for index in asking],
            lambda job: self._hash_reply(remote[asking[job]]),
        )
        to_send = []
        for index, answer in zip(asking, known, strict=True):
            if isinstance(answer, p.FileDigest) and (answer.size, answer.sha256) == digests[index]:
                size, sha256 = digests[index]
                outcomes[index] = UploadResult(
                    remote[index], size, sha256, 0, UploadOutcome.SKIPPED, found[index][0]
                )
            else:
                to_send.append(index)
        to_send.extend(index for index in digests if index not in asked)  # BadRequest below
        to_send.sort()
        meter = ProgressMeter(progress, len(found), sum(digests[i][0] for i in to_send))
        meter.files_done = len(found) - len(to_send)
        sending = _UploadQueue(self, found, remote, scanned, replace)
        for index, outcome in sending.run(to_send, meter):
            outcomes[index] = outcome
        self.local_digests.flush()
        results = [outcome for outcome in outcomes if outcome is not None]
        files = [(local, path) for (local, _), path in zip(found, remote, strict=True)]
        return _upload_summary(results, files, meter.bytes_done)

    def _check_uploads(self) -> None:
        if self.closed:
            raise ConnectionLost("the connection is closed")
        if self.protocol < 2:
            raise Forbidden(f"the server ({self.server}) speaks protocol 1, which has no uploads")

    def _put(
        self, source: LocalSource, remote_path: str, replace: bool, meter: ProgressMeter
    ) -> UploadResult:
        """One PUT of the open ``source``: READY, the rest of its body, STORED."""
        return self._finish_put(source, self._announce(source, remote_path, replace), meter)

    def _announce(self, source: LocalSource, remote_path: str, replace: bool) -> p.Put:
        """Send the PUT of ``source`` as ``remote_path``; its answer is read by
        :meth:`_finish_put`."""
        if self.closed:
            raise ConnectionLost("the connection is closed")
        mode = p.PutMode.REPLACE if replace else p.PutMode.NEW
        request = p.Put(source.size, source.sha256, mode, remote_path)
        self._link.send(self._conn.send(self._fitting(request)))
        return request

    def _finish_put(
        self,
        source: LocalSource,
        request: p.Put,
        meter: ProgressMeter,
        after_body: Callable[[], object] | None = None,
    ) -> UploadResult:
        """Read the answer to the PUT ``request`` of ``source``: READY, then send
        the rest of its body (then call ``after_body``, which may send the next
        PUT, so it travels while the server syncs this file), then STORED."""
        remote_path, size = request.path, request.size
        try:
            ready = self._expect(self._read_reply(), p.ReadyReply)
        except Exists:
            if not self._server_has(remote_path, size, source.sha256):
                raise
            return UploadResult(
                remote_path, size, source.sha256, 0, UploadOutcome.SKIPPED, source.path
            )
        if ready.path != remote_path or not 0 <= ready.offset <= size:
            raise ProtocolError(f"asked to send {request!r}, the server sent {ready!r}")
        offset = ready.offset
        counter = meter.file(remote_path, offset, size)
        unchanged = self._send_body(source, offset, counter)
        meter.received(size - offset)
        if after_body is not None:
            after_body()
        try:
            # STORED comes after the server's fsync of the file: on a slow disk that
            # takes a while, the longer the larger the file.
            stored = self._expect(
                self._read_reply(patience=self.timeout + size / STORED_PATIENCE_BYTES),
                p.StoredReply,
            )
        except IntegrityError:
            if not unchanged:
                raise Changed(
                    f"{source.path} changed while it was sent: the server placed nothing"
                ) from None
            raise
        if not unchanged or (stored.size, stored.sha256, stored.path) != (
            size,
            source.sha256,
            remote_path,
        ):
            self._link.close()  # it answered for another upload: nothing after can be trusted
            raise ProtocolError(f"sent {request!r}, the server answered {stored!r}")
        outcome = UploadOutcome.RESUMED if offset else UploadOutcome.STORED
        return UploadResult(remote_path, size, source.sha256, offset, outcome, source.path)

    def _server_has(self, path: str, size: int, sha256: str) -> bool:
        """Whether the server's ``path`` has this size and SHA-256 (a refused HASH: no)."""
        try:
            reply = self._expect(self._execute_in_command(p.Hash(path)), p.HashReply)
        except RequestError:
            return False
        return (reply.file.path, reply.file.size, reply.file.sha256) == (path, size, sha256)

    def _execute_in_command(self, request: p.Request) -> p.Reply:
        """Send one request and read its reply, within the command's clock already running."""
        if self.closed:
            raise ConnectionLost("the connection is closed")
        self._link.send(self._conn.send(self._fitting(request)))
        return self._read_reply()

    def _send_body(
        self, source: LocalSource, offset: int, counter: Callable[[int, int], None] | None
    ) -> bool:
        """Send ``source`` from ``offset`` to its end; whether it stayed unchanged.

        Its last byte is held back until the file is checked (see
        :meth:`LocalSource.last_byte`), so a file written to while it is sent
        is never placed, even if its digest would match by chance.
        """
        size = source.size
        length = size - offset
        unchanged = source.unchanged()
        if length:
            if counter is not None:
                counter(0, length)
            report = None if counter is None else (lambda done: counter(done, length))
            try:
                moved = self._link.send_file(
                    source.fd, offset, length - 1, report, self._command_deadline
                )
                if moved < length - 1:  # cut short while it was sent: made up, to stay in step
                    self._send_filler(length - 1 - moved)
                unchanged = moved == length - 1 and source.unchanged()
                self._link.send(source.last_byte(unchanged=unchanged))
            except TimedOut:
                raise
            except ConnectionLost as lost:
                raise self._why_lost(lost) from None
            if counter is not None:
                counter(length, length)
        self._conn.send_body_done()
        return unchanged

    def _why_lost(self, lost: ConnectionLost) -> FiledockError:
        """The server's last word, when it said one before it closed in the middle
        of an upload's body (``ERR shutdown``), else ``lost``."""
        try:
            self._read_reply()
        except FiledockError as said:
            if isinstance(said, RequestError):
                return said
        return lost

    def _send_filler(self, count: int) -> None:
        """Send ``count`` zero bytes in place of a body's bytes the file no longer has."""
        block = bytes(min(count, 1024 * 1024))
        while count > 0:
            self._link.send(block[:count])
            count -= min(count, len(block))

    def exit(self) -> bool:
        """Say EXIT, wait briefly for BYE, and close; whether BYE came. Safe to call twice.

        A file :meth:`open` returned and not read to its end is cut off: the
        connection is closed without a word (its body is in the way).

        >>> other = filedock.Client("127.0.0.1", port)
        >>> other.exit(), other.exit(), other.closed
        (True, False, True)
        """
        if self._reading is not None:
            self._reading = None
            self._link.close()
        if self.closed:
            self.local_digests.close()
            return False
        try:
            return isinstance(self._execute(p.Exit(), within=min(self.timeout, 2.0)), p.ByeReply)
        except FiledockError:
            return False  # the server is gone or closing: nothing left to say
        finally:
            self._link.close()
            self.local_digests.close()

    def close(self) -> None:
        """Leave the server (EXIT, then close). Safe to call twice."""
        try:
            self.exit()
        finally:
            self.local_digests.close()

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

    def __repr__(self) -> str:
        where = host_port(self.host, self.port)
        name = getattr(self, "name", None) or "-"  # not named yet: still connecting
        closed = " closed" if getattr(self, "_link", None) is None or self.closed else ""
        return f"<Client {where} {name}{closed}>"

    def _check_not_reading(self) -> None:
        """A file :meth:`open` returned holds the connection: no command until it is done."""
        reading = self._reading
        if reading is not None and not reading.closed:
            raise RuntimeError(
                f"{reading.path} is open for reading: read it to its end or close it first"
            )
        self._reading = None

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
        self._fitting(request)
        self._begin_command(within)
        self._link.send(self._conn.send(request))
        return self._read_reply()

    def _fitting(self, request: p.Request) -> p.Request:
        """``request``, if its line is within the server's ``max_line``: a longer one
        would make the server close the session, so it is refused here, unsent."""
        size = len(p.encode_request(request))
        if size > self.max_line:
            raise LineTooLong(
                f"not sent: the line is {size} bytes, over the server's limit of "
                f"{self.max_line} bytes (its --max-line, the line feed included)"
            )
        return request

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

    def _read_reply(self, patience: float | None = None) -> p.Reply:
        """The next reply line within ``timeout`` (or ``patience`` seconds, when
        longer), and max_time, which also bound the records after it; ``ERR`` raises."""
        wait = self.timeout if patience is None else max(self.timeout, patience)
        deadline = time.monotonic() + wait
        if self._command_deadline is not None and self._command_deadline < deadline:
            self._link.set_deadline(self._command_deadline, self._command_message)
        else:
            self._link.set_deadline(
                deadline,
                f"the server did not send its whole answer within {wait:g} s",
                f"no answer from the server within {wait:g} s",
            )
        self._link.timeout = wait
        try:
            reply = self._next_event()
        finally:
            self._link.timeout = self.timeout
        if isinstance(reply, p.ErrorReply):
            raise error_for_code(reply.code, reply.text)
        if isinstance(reply, _NOT_REPLIES):
            raise ProtocolError(f"expected a reply, the server sent {reply!r}")  # never
        return reply

    def _records(self, kind: type[_T]) -> builtins.list[_T]:
        """The records of the STATUS or FILES reply just read (within its deadline)."""
        records: builtins.list[_T] = []
        take = self._conn.take_records
        while True:
            # Every record whose line is in hand at once, then wait for more.
            batch = take()
            if batch and not isinstance(batch[0], kind):  # one reply's records are one kind
                raise ProtocolError(f"expected a record, the server sent {batch[0]!r}")  # never
            records += cast("builtins.list[_T]", batch)
            event = self._next_event()
            if isinstance(event, EndOfReply):
                return records
            if not isinstance(event, kind):
                raise ProtocolError(f"expected a record, the server sent {event!r}")  # never
            records.append(event)

    def _receive(
        self,
        path: str,
        header: p.FileReply,
        dest: Path | None,
        dest_dir: str | os.PathLike[str],
        meter: ProgressMeter,
        *,
        resume: bool = True,
        mtime_ns: int | None = None,
    ) -> DownloadResult:
        """Receive a FILE body into ``dest`` (None: ``dest_dir/<path>``), verified.

        A body cut short is kept with its resume record (``resume``, and a body
        large enough to be written as it comes); one that does not verify or
        cannot be written is removed.
        """
        from .download import INLINE_LIMIT, local_path
        from .resume import Checkpoints, keeps_partial, new_record

        if header.path != path:
            # The server answered for another file: its body cannot be trusted
            # either, and the stream cannot be resynchronised.
            raise ProtocolError(f"asked for {path!r}, the server sent {header.path!r}")
        root = None  # a destination the plan looked at already, or under dest_dir, checked here
        if dest is None:
            dest, root = local_path(dest_dir, header.path), Path(dest_dir)
        first = self._body_start(header.size)
        # The body is bounded by max_time as a whole, and by timeout per silence.
        self._link.set_deadline(self._command_deadline, self._command_message)
        try:
            partial = self._open_partial(dest, header.size, first, root)
        except SaveError:
            self._skip_trailer()  # a refused body was read and dropped: its trailer too
            raise
        checkpoint = None
        if resume and header.size > INLINE_LIMIT:
            record = new_record(self._server_id, path, header.size, header.sha256)
            record.save(dest)
            checkpoint = Checkpoints(partial.fd, dest, record)
        counter = meter.file(path, 0, header.size)
        try:
            received = self._body_into(
                partial, first, header.size, counter, meter, checkpoint=checkpoint
            )
        except SaveError:
            self._skip_trailer()  # a body that could not be written, read whole: its trailer too
            raise
        try:
            # A header without the digest: it follows the body (ERR changed raises Changed).
            expected = header.sha256 or self._trailer_digest()
        except BaseException as exc:
            # Cut short before the DIGEST: the whole body is kept as a partial,
            # and a resume's HASH, then its whole-file check, decide whether it is good.
            self._interrupted(partial, checkpoint is not None and keeps_partial(exc))
            raise
        if received.sha256 != expected:
            self._drop(partial)
            raise IntegrityError(
                f"SHA-256 mismatch for {dest.name}",
                expected=expected,
                actual=received.sha256,
            )
        return self._save(
            partial, header.size, expected, mtime_ns, had_record=checkpoint is not None
        )

    def _body_into(
        self,
        partial: Partial,
        first: bytes,
        length: int,
        counter: Progress | None,
        meter: ProgressMeter,
        *,
        rehash: int = 0,
        checkpoint: Checkpoints | None = None,
    ) -> Received:
        """Receive a body of ``length`` into ``partial``, hashed (after its first
        ``rehash`` bytes, read back: a resume's prefix); the partial is kept if
        cut short with a ``checkpoint`` (a resume record), removed when it
        cannot be written."""
        from .download import receive_body
        from .resume import keeps_partial

        try:
            try:
                received = receive_body(
                    self._recv_body_into,
                    first,
                    length,
                    partial.fd,
                    counter,
                    rehash=rehash,
                    checkpoint=checkpoint,
                )
            except BaseException:
                if checkpoint is not None:
                    checkpoint.finish()  # its last sync recorded: a resume goes on from there
                raise
            if checkpoint is not None:
                checkpoint.finish(wait=False)  # read to its end: the record goes next
        except BaseException as exc:
            self._interrupted(partial, checkpoint is not None and keeps_partial(exc))
            raise
        meter.received(length)
        if received.whole:
            self._body_end()
        if received.write_error is not None:
            self._drop(partial)
            raise SaveError(f"cannot write {partial.dest}: {received.write_error.strerror}")
        return received

    def _save(
        self,
        partial: Partial,
        size: int,
        sha256: str,
        mtime_ns: int | None,
        *,
        had_record: bool,
    ) -> DownloadResult:
        """Rename a verified partial into place; its digest is cached, its record removed."""
        from .resume import remove_record

        try:
            saved = partial.commit(mtime_ns)
        finally:
            if had_record:
                remove_record(partial.dest)
        if partial.saved is not None:
            self.local_digests.put(partial.saved, sha256)
        return DownloadResult(saved, size, sha256)

    def _drop(self, partial: Partial) -> None:
        from .resume import remove_record

        partial.discard()
        remove_record(partial.dest)

    def _interrupted(self, partial: Partial, keep: bool) -> None:
        """A body cut short: keep the partial for a resume, or remove it."""
        if keep:
            partial.keep()
        else:
            self._drop(partial)

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

    def _open_partial(
        self, dest: Path, size: int, first: bytes, root: Path | None = None
    ) -> Partial:
        """Where the body of ``dest`` goes, or the reason it is refused, before any byte is written.

        With ``root``, a folder between it and ``dest`` that is a symbolic link refuses it.

        A refused body is read and dropped when it is small, so the session
        goes on; a larger one is left unread (and the connection closed).
        """
        from .download import (
            Partial,
            discard_body,
            linked_folder,
            refused_link,
            remove_old_partials,
        )

        try:
            link = None if root is None else linked_folder(root, dest)
            if link is not None and root is not None:
                raise SaveError(refused_link(link, root))
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


class _StreamSource:
    """The client's connection as the body of a :class:`RemoteFile` sees it."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def recv_into(self, view: memoryview) -> int:
        return self._client._recv_body_into(view)

    def finish(self) -> str | None:
        client = self._client
        client._body_end()
        if client._conn.state is ClientState.TRAILER:
            return client._trailer_digest()
        return None

    def release(self, *, in_step: bool) -> None:
        client = self._client
        client._reading = None
        if not in_step:
            client._link.close()
        client._settle()


class _UploadQueue:
    """The PUTs of a folder upload, one after the other, the next PUT sent as
    soon as a body is (so it travels while the server syncs the file before)."""

    def __init__(
        self,
        client: Client,
        found: builtins.list[tuple[Path, str]],
        remote: builtins.list[str],
        scanned: dict[int, tuple[Key, str]],
        replace: bool,
    ) -> None:
        self._client = client
        self._found = found
        self._remote = remote
        self._scanned = scanned
        self._replace = replace
        self._broken: FiledockError | None = None  # the stream is out of step: no more

    def run(
        self, indexes: builtins.list[int], meter: ProgressMeter
    ) -> Iterable[tuple[int, UploadResult | FiledockError]]:
        """``(index, outcome)`` of each file of ``indexes``, in order."""
        waiting = deque(indexes)
        current = self._next(waiting)
        while current is not None:
            index, job = current
            if isinstance(job, FiledockError):  # refused before anything was sent
                yield index, job
                meter.finished()
                current = self._next(waiting)
                continue
            source, request = job
            following: _Announced | None = None

            def announce_next() -> None:
                nonlocal following
                following = self._next(waiting)

            try:
                outcome: UploadResult | FiledockError = self._client._finish_put(
                    source, request, meter, announce_next
                )
            except FiledockError as exc:
                outcome = exc
                if self._client._conn.state not in _BETWEEN_REPLIES or self._client.closed:
                    self._broken = exc
            finally:
                source.close()
            yield index, outcome
            meter.finished()
            if following is not None and self._broken is not None:
                yield self._drop(following)
                following = None
            current = following if following is not None else self._next(waiting)
        for index in waiting:
            assert self._broken is not None
            yield index, self._broken

    def _next(self, waiting: deque[int]) -> _Announced | None:
        """Open the next file and send its PUT; None when none is left (or the
        stream broke: the rest are left in ``waiting``)."""
        if not waiting or self._broken is not None:
            return None
        index = waiting.popleft()
        client = self._client
        try:
            check_remote_path(self._remote[index])
            local = self._found[index][0]
            source = LocalSource.open(local, client.local_digests, self._scanned[index])
        except FiledockError as exc:
            return index, exc
        try:
            return index, (source, client._announce(source, self._remote[index], self._replace))
        except BaseException as exc:
            source.close()
            if isinstance(exc, FiledockError):
                self._broken = exc
                return index, exc
            raise

    def _drop(self, announced: _Announced) -> tuple[int, FiledockError]:
        index, job = announced
        if not isinstance(job, FiledockError):
            job[0].close()
        assert self._broken is not None
        return index, self._broken


_Announced = tuple[int, tuple[LocalSource, p.Put] | FiledockError]


def _sendable(path: str) -> bool:
    try:
        check_remote_path(path)
    except BadRequest:
        return False
    return True


def _upload_summary(
    results: builtins.list[UploadResult | FiledockError],
    files: builtins.list[tuple[Path, str]],
    sent: int,
) -> UploadSummary:
    counts = {outcome: 0 for outcome in UploadOutcome}
    for result in results:
        if isinstance(result, UploadResult):
            counts[result.outcome] += 1
    return UploadSummary(
        stored=counts[UploadOutcome.STORED],
        resumed=counts[UploadOutcome.RESUMED],
        skipped=counts[UploadOutcome.SKIPPED],
        failed=sum(isinstance(result, FiledockError) for result in results),
        bytes=sent,
        results=results,
        files=files,
    )


def _each(action: Callable[[FilePlan], None], plans: Iterable[FilePlan]) -> None:
    for plan in plans:
        action(plan)


@contextlib.contextmanager
def _letting_go_if_cut(plans: Iterable[FilePlan]) -> Iterator[None]:
    """Let go of the plans' partials (kept for a resume) if the block ends early:
    Ctrl-C while looking, hashing or printing a change would leave them locked
    for as long as this process lives (a shell's next ``get`` refused)."""
    from .plan import FilePlan

    try:
        yield
    except BaseException:
        _each(FilePlan.release, plans)
        raise


def _check_transfer(
    dest_dir: object,
    resume: object,
    no_clobber: object,
    progress: object,
    *,
    dest_name: str = "dest_dir",
) -> None:
    """The arguments every download method shares, checked before anything is sent."""
    check.local_path(dest_name, dest_dir)
    check.flag("resume", resume)
    check.flag("no_clobber", no_clobber)
    check.callback("progress", progress)


def _known_servers(
    known_servers: bool | str | os.PathLike[str] | None, tls: object
) -> KnownServers | None:
    """The pins ``Client(known_servers=...)`` names: True, the default file; a path, that one."""
    if known_servers is None or known_servers is False:
        return None
    if tls is False:
        raise ValueError("known_servers pins TLS certificates: it needs tls, not tls=False")
    if known_servers is True:
        return KnownServers()
    return KnownServers(check.local_path("known_servers", known_servers))


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


# The smallest --max-line a server takes (the largest is the protocol's MAX_LINE_LIMIT).
MIN_LINE_LIMIT = 64


def check_line_limit(value: int) -> int:
    """``value`` if it is a line limit a server may have (64 to 32768 bytes); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_line must be a whole number of bytes, not {value!r}")
    if not MIN_LINE_LIMIT <= value <= p.MAX_LINE_LIMIT:
        raise ValueError(
            f"max_line must be from {MIN_LINE_LIMIT} to {p.MAX_LINE_LIMIT} bytes, not {value!r}"
        )
    return value


class LineTooLong(BadRequest):
    """A request the client did not send: its line is over the server's ``max_line``
    (the server would have closed the session). The connection is as it was."""

    code = p.ErrorCode.LINE_TOO_LONG


def check_size(name: str, value: int) -> int:
    """``value`` if it is a whole number of bytes, 0 or more; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of bytes, 0 or more, not {value!r}")
    return value
