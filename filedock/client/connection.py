"""The client's socket: connect (and TLS), send, receive within deadlines.

This is the one place where ``OSError`` becomes :class:`ConnectionLost`
(and a timeout :class:`TimedOut`), with ``raise … from None``: what the
socket layer says is in the message, its traceback is not the caller's
business. A :class:`SocketLink` knows nothing of the protocol.
"""

from __future__ import annotations

import functools
import os
import select
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConnectionLost, TimedOut
from ..hostport import host_port
from .pins import KnownServers, fingerprint

if TYPE_CHECKING:
    import ssl  # imported where TLS is used: a plain connection need not load it

# Bytes of a file sent between two progress reports (and deadline checks).
SEND_FILE_CHUNK = 8 * 1024 * 1024
# Under TLS the file goes through memory: read and sent this much at a time.
TLS_SEND_BUFFER = 256 * 1024
# Under TLS one receive takes the records already there up to this much: enough
# that a receive is not one 16 KiB record, little enough that the bytes are
# still in the CPU's cache when the caller hashes them.
TLS_RECEIVE_LIMIT = 256 * 1024


def client_context(cafile: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A TLS client context that checks the server's certificate and host name.

    TLS 1.2 at least, the system's recommended ciphers. ``cafile`` trusts a
    private CA instead of the system's store; ``insecure`` checks nothing and
    is only for testing against a self-signed server.
    """
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_context(
    tls: ssl.SSLContext | bool | str | os.PathLike[str] | None,
) -> ssl.SSLContext | None:
    """The context a ``Client(tls=...)`` shortcut stands for: None or False, plain
    TCP; True, the system's CAs; a path, the CA certificates in that file; a
    context, itself. TypeError for anything else, ValueError for a CA file
    that cannot be read."""
    if tls is None or tls is False:
        return None
    import ssl

    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return client_context()
    if isinstance(tls, str | os.PathLike):
        try:
            return client_context(os.fspath(tls))
        except OSError as exc:  # ssl.SSLError included: not a PEM file
            raise ValueError(
                f"tls: cannot use {os.fspath(tls)!r} as a CA file: {exc.strerror or exc}"
            ) from None
    raise TypeError(
        f"tls must be an ssl.SSLContext, True, a CA file's path, or None, not {type(tls).__name__}"
    )


class SocketLink:
    """A connected socket (TLS if ``tls`` is given) to ``host:port``.

    ``connect_timeout`` bounds the connect and, as a whole, the TLS handshake;
    ``timeout`` then bounds each wait for the server to send or take bytes.
    :meth:`set_deadline` bounds the reads that follow as a whole too.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        connect_timeout: float,
        tls: ssl.SSLContext | None = None,
        known: KnownServers | None = None,
        accept_new: bool = False,
    ) -> None:
        self.timeout = timeout
        # The server certificate's SHA-256 fingerprint (TLS), and whether it
        # was pinned by this connection (``known``: trust on first use).
        self.fingerprint: str | None = None
        self.pinned = False
        sock = _connect(host, port, connect_timeout)
        self._sock = sock
        self._tls = tls is not None
        try:
            if tls is not None:
                if known is not None:
                    reconnect = functools.partial(_connect, host, port, connect_timeout)
                    secured, self.pinned = _start_tls_known(
                        sock, tls, host, port, known, accept_new, reconnect
                    )
                else:
                    secured = _start_tls(sock, tls, host, port)
                self._sock = secured
                self.fingerprint = fingerprint(secured.getpeercert(binary_form=True) or b"")
            self._sock.settimeout(timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # the server reset the connection as it was made
            self._sock.close()
            raise ConnectionLost(f"connection to the server was lost: {_reason(exc)}") from None
        except BaseException:
            self._sock.close()
            raise
        self._sock_timeout = timeout  # the timeout the socket has now (set only on change)
        self.closed = False
        # When the reads in progress must end (None: only each silence is bounded),
        # why, and why when not a byte came meanwhile.
        self._deadline: float | None = None
        self._deadline_message = self._silent_message = ""
        self._received = self._mark = 0  # bytes received in all, and when the deadline was set

    def set_deadline(self, deadline: float | None, message: str, silent: str = "") -> None:
        """Reads from now on must end by ``deadline`` (None: each silence is bounded only).

        ``message`` says why when it passes; ``silent`` instead, if given,
        when not a byte came meanwhile.
        """
        self._deadline = deadline
        self._deadline_message = message
        self._silent_message = silent or message
        self._mark = self._received

    def send(self, data: bytes) -> None:
        """Send all of ``data``; TimedOut when the server takes none for ``timeout``."""
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise TimedOut(f"the server took no data for {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionLost(f"connection to the server was lost: {_reason(exc)}") from None

    def send_file(
        self,
        fd: int,
        offset: int,
        count: int,
        sent: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> int:
        """Send up to ``count`` bytes of the open file ``fd`` from ``offset``: by
        ``os.sendfile`` on plain TCP (socket.sendfile), read and sent in chunks
        under TLS; the bytes sent, fewer only when the file ends first.

        ``sent(total)`` is told the bytes sent so far after each chunk;
        ``deadline`` (time.monotonic) bounds it all. Raises TimedOut and
        ConnectionLost as :meth:`send` does."""
        done = 0
        buffer = memoryview(bytearray(min(TLS_SEND_BUFFER, count))) if self._tls else None
        try:
            with open(fd, "rb", buffering=0, closefd=False) as source:
                while done < count:
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimedOut("the upload did not finish in the time given")
                    step = min(SEND_FILE_CHUNK, count - done)
                    if buffer is None:
                        moved = self._sock.sendfile(source, offset + done, step)
                    else:
                        moved = self._send_read(fd, offset + done, step, buffer)
                    if moved == 0:
                        break  # the file is shorter than it was
                    done += moved
                    if sent is not None:
                        sent(done)
        except TimeoutError:
            raise TimedOut(f"the server took no data for {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionLost(f"connection to the server was lost: {_reason(exc)}") from None
        return done

    def _send_read(self, fd: int, offset: int, count: int, buffer: memoryview) -> int:
        """Read ``count`` bytes of ``fd`` from ``offset`` into ``buffer`` and send
        them (TLS cannot use sendfile); the bytes sent, 0 at the file's end."""
        done = 0
        while done < count:
            got = os.preadv(fd, [buffer[: min(len(buffer), count - done)]], offset + done)
            if got == 0:
                break
            self._sock.sendall(buffer[:got])
            done += got
        return done

    def recv_into(self, view: memoryview) -> int:
        """Receive into ``view``; 0 when the server closed its side.

        Raises TimedOut when ``timeout`` passes without a byte, or the deadline
        passes, and ConnectionLost once closed.
        """
        if self.closed:
            raise ConnectionLost("the connection is closed")
        deadline = self._deadline
        wait = self.timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(deadline_passed=True)
            wait = min(wait, left)
        if wait != self._sock_timeout:
            self._sock.settimeout(wait)
            self._sock_timeout = wait
        try:
            count = self._sock.recv_into(view)
        except TimeoutError:
            raise self._timed_out(deadline_passed=wait < self.timeout) from None
        except OSError as exc:
            raise ConnectionLost(f"connection to the server was lost: {_reason(exc)}") from None
        if self._tls and 0 < count < len(view):
            count += self._recv_ready(view[count:TLS_RECEIVE_LIMIT])
        self._received += count
        return count

    def _recv_ready(self, view: memoryview) -> int:
        """Under TLS, what more has come already, up to ``len(view)``, without waiting.

        One TLS read brings one record (16 KiB at most), and going up through
        the client's layers once a record cost more than decrypting it.
        """
        done = 0
        self._sock.settimeout(0.0)
        try:
            while done < len(view):
                count = self._sock.recv_into(view[done:])
                if count == 0:
                    break
                done += count
        except OSError:  # ssl.SSLWantReadError: nothing more yet; others: the next read says
            pass
        finally:
            self._sock.settimeout(self._sock_timeout)
        return done

    def readable_within(self, seconds: float) -> bool:
        """Whether the server sends something (or closes) within ``seconds``;
        nothing is read."""
        try:
            ready, _, _ = select.select([self._sock], [], [], seconds)
        except (OSError, ValueError):  # closed meanwhile: the next read says so
            return True
        return bool(ready)

    def _timed_out(self, *, deadline_passed: bool) -> TimedOut:
        if not deadline_passed:
            return TimedOut(f"no answer from the server within {self.timeout:g} s")
        if self._received == self._mark:
            return TimedOut(self._silent_message)
        return TimedOut(self._deadline_message)

    def close(self) -> None:
        """Close the socket; safe to call twice."""
        if not self.closed:
            self.closed = True
            self._sock.close()


def _connect(host: str, port: int, connect_timeout: float) -> socket.socket:
    where = host_port(host, port)
    try:
        return socket.create_connection((host, port), timeout=connect_timeout)
    except TimeoutError:
        raise TimedOut(f"no answer from {where} within {connect_timeout:g} s") from None
    except OSError as exc:
        raise ConnectionLost(f"cannot connect to {where}: {_reason(exc)}") from None


def _start_tls_known(
    sock: socket.socket,
    context: ssl.SSLContext,
    host: str,
    port: int,
    known: KnownServers,
    accept_new: bool,
    reconnect: Callable[[], socket.socket],
) -> tuple[ssl.SSLSocket, bool]:
    """TLS, trusting on first use: a certificate a trusted CA signed is taken as
    always; another one only with the fingerprint ``known`` pins for this server
    (pinned now when none is). The TLS socket, and whether it was pinned now.

    A certificate that does not verify ends its handshake, so it is looked at
    on a second connection, which checks nothing but its fingerprint."""
    where = host_port(host, port)
    if known.pinned(where) is None and not accept_new:
        try:
            return _start_tls(sock, context, host, port, pinning=True), False
        except _NotVerified:
            sock = reconnect()
    try:
        tls = _start_tls(sock, client_context(insecure=True), host, port)
    except BaseException:
        sock.close()
        raise
    try:
        presented = fingerprint(tls.getpeercert(binary_form=True) or b"")
        return tls, known.check(where, presented, accept_new=accept_new)
    except BaseException:
        tls.close()
        raise


class _NotVerified(Exception):
    """The server's certificate does not verify (the socket is closed): try its pin."""


def _start_tls(
    sock: socket.socket, context: ssl.SSLContext, host: str, port: int, *, pinning: bool = False
) -> ssl.SSLSocket:
    """Wrap a connected socket in TLS, checking the server's certificate."""
    import ssl

    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        if pinning:
            sock.close()
            raise _NotVerified from None
        where = host_port(host, port)
        raise ConnectionLost(
            f"TLS: the certificate of {where} was not accepted ({exc.verify_message})"
        ) from None
    except TimeoutError:
        raise TimedOut(f"TLS handshake with {host_port(host, port)} timed out") from None
    except OSError as exc:  # ssl.SSLError included
        reason = getattr(exc, "reason", None) or _reason(exc)
        raise ConnectionLost(
            f"TLS handshake with {host_port(host, port)} failed ({reason}): is it a TLS server?"
        ) from None


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
