"""A server file read as a stream: :class:`RemoteFile`, what ``Client.open`` returns.

The body of one ``GET`` is read as the caller asks for it, hashed as it
comes, and checked against the file's SHA-256 before its last bytes are
handed out: the read that reaches the end raises :class:`IntegrityError`
(or :class:`Changed`, for a file that changed while it was sent) instead of
returning them. Bytes handed out earlier are not verified yet: act on them
only once the read to the end has returned.

While a file is open its body is the connection's next bytes, so the client
takes no other command (RuntimeError) until it is read to its end or closed.
Closed early, the rest of the body is read and dropped when it is at most
:data:`DRAIN_LIMIT` bytes, so the connection goes on; past that a new
connection costs less than reading on, and this one is closed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from ..errors import FiledockError, IntegrityError, RequestError
from .background_hash import BackgroundSha256

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from .sha256state import Digest  # (a type only: the module loads libcrypto)

# Bytes of a body closed early that are still read and dropped (the client's
# rule for a refused body: see client.DISCARD_LIMIT); more closes the connection.
DRAIN_LIMIT = 64 * 1024 * 1024
# What one receive asks the socket for, when the caller's buffer is smaller.
CHUNK_SIZE = 64 * 1024
# Bodies from this size on are hashed on a thread of their own, beside the
# reading (and decrypting) thread; a smaller one costs less hashed inline.
BACKGROUND_HASH_MIN = 8 * 1024 * 1024


class BodySource(Protocol):
    """What a :class:`RemoteFile` needs of its client's connection."""

    def recv_into(self, view: memoryview) -> int:
        """Receive up to ``len(view)`` of the body's next bytes into ``view``;
        ConnectionLost when the server closed first."""
        ...

    def finish(self) -> str | None:
        """After the body's last byte: its trailer's SHA-256 when the header had
        none (Changed when the file changed meanwhile), else None."""
        ...

    def release(self, *, in_step: bool) -> None:
        """The file no longer holds the connection; not ``in_step``: close it."""
        ...


class RemoteFile(io.BufferedIOBase):
    """One server file's verified body, read in order (not seekable).

    ``path`` and ``size`` are the server's; ``sha256`` the digest the bytes
    are checked against (None until the end when the server sends it after
    the body); ``verified`` is True once they matched. ``read(n)`` returns n
    bytes unless the end comes first, ``read1``/``readinto1`` what one receive
    brings, :meth:`iter_bytes` the body in chunks as httpx's ``iter_bytes``
    does; ``for line in f`` gives lines, as any binary file does.

    >>> with client.open("sample.txt") as f:
    ...     f.size, f.read(3), f.read(), f.verified
    (6, b'hel', b'lo\\n', True)
    """

    def __init__(
        self,
        path: str,
        size: int,
        sha256: str | None,
        first: bytes,
        source: BodySource,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.verified = False
        self._source = source
        self._progress = progress
        self._hasher: Digest = (
            BackgroundSha256() if size >= BACKGROUND_HASH_MIN else hashlib.sha256()
        )
        self._buffer = bytearray(CHUNK_SIZE)
        self._pending = memoryview(b"")  # received, checked if last, not handed out yet
        self._first: bytes | None = first
        self._to_receive = size  # body bytes not received yet (first included)
        self._position = 0  # bytes handed out
        self._failed: FiledockError | None = None
        self._released = False

    # -- io.BufferedIOBase --------------------------------------------------------

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Bytes handed out so far."""
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when negative or None), fewer only at the end."""
        self._check_open()
        left = self.size - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        if not left and not self._pending:
            self._fill()  # an empty body is checked too, by the read that finds its end
        out = bytearray(wanted)
        count = self.readinto(out)
        del out[count:]
        return bytes(out)

    def read1(self, size: int = -1) -> bytes:
        """What is buffered, or what one receive brings: at most ``size`` bytes."""
        self._check_open()
        if not self._pending and not self._fill():
            return b""
        count = len(self._pending) if size < 0 else min(size, len(self._pending))
        return bytes(self._take(count))

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer``; fewer bytes only at the end (0 there)."""
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            count = self._readinto1(view[done:])
            if count == 0:
                break
            done += count
        return done

    def readinto1(self, buffer: WriteableBuffer) -> int:
        return self._readinto1(memoryview(buffer).cast("B"))

    def peek(self, size: int = 0) -> bytes:
        """The buffered bytes, without handing them out (so ``readline`` is not byte by byte)."""
        self._check_open()
        if not self._pending:
            self._fill()
        return bytes(self._pending)

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The rest of the body in chunks of ``chunk_size`` bytes (None: as they come)."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be 1 or more, not {chunk_size!r}")
        while chunk := (self.read1() if chunk_size is None else self.read(chunk_size)):
            yield chunk

    def close(self) -> None:
        """Stop reading: the rest of the body is read and dropped (up to
        :data:`DRAIN_LIMIT`, else the connection is closed). Safe to call twice."""
        if self.closed:
            return
        try:
            if not self._released:
                self._drop_rest()
        finally:
            super().close()

    def __del__(self) -> None:
        # Never drain from the garbage collector: the client still holds the
        # file while it is open, and its own close lets it go.
        pass

    # -- the body -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"read of a closed file ({self.path})")
        if self._failed is not None:
            raise self._failed

    def _readinto1(self, view: memoryview) -> int:
        self._check_open()
        if not view:
            return 0
        if not self._pending:
            if self._first is None and self._to_receive and len(view) >= CHUNK_SIZE:
                return self._receive(view)  # straight into the caller's buffer
            if not self._fill():
                return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._take(count)
        return count

    def _fill(self) -> bool:
        """Receive the next bytes into the buffer; False at the end."""
        if self._first is not None:
            first, self._first = self._first, None
            if first or not self._to_receive:
                self._pending = memoryview(first)
                self._arrived(self._pending)
                return bool(first)
        if not self._to_receive:
            return False
        count = self._receive(memoryview(self._buffer), pending=True)
        return count > 0

    def _receive(self, view: memoryview, *, pending: bool = False) -> int:
        """Receive body bytes into ``view`` (the buffer, made pending; or the
        caller's, handed out): their count, checked if they end the body."""
        view = view[: self._to_receive]
        try:
            count = self._source.recv_into(view)
        except FiledockError as exc:
            self._fail(exc, in_step=False)
            raise
        got = view[:count]
        if pending:
            self._pending = got
        self._arrived(got)
        if not pending:
            self._position += count
            self._report()
        return count

    def _arrived(self, data: memoryview) -> None:
        """Hash bytes received; if they end the body, check it before any is handed out."""
        self._hasher.update(data)
        self._to_receive -= len(data)
        if self._to_receive == 0:
            self._verify()

    def _take(self, count: int) -> memoryview:
        data = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        self._report()
        return data

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self._position, self.size)

    def _verify(self) -> None:
        try:
            trailer = self._source.finish()
        except FiledockError as exc:  # ERR changed: the trailer ended the reply, in step
            self._fail(exc, in_step=True)
            raise
        if self.sha256 is None:
            self.sha256 = trailer
        actual = self._hasher.hexdigest()
        if actual != self.sha256:
            self._pending = memoryview(b"")
            error = IntegrityError(
                f"SHA-256 mismatch for {self.path}", expected=self.sha256 or "", actual=actual
            )
            self._fail(error, in_step=True)
            raise error
        self.verified = True
        self._let_go(in_step=True)

    def _fail(self, error: FiledockError, *, in_step: bool) -> None:
        self._failed = error
        self._let_go(in_step=in_step)

    def _let_go(self, *, in_step: bool) -> None:
        if not self._released:
            self._released = True
            if isinstance(self._hasher, BackgroundSha256):
                self._hasher.stop()  # ended already when the body was checked
            self._source.release(in_step=in_step)

    def _drop_rest(self) -> None:
        """Read the rest of the body and drop it (no check: nobody reads it), or
        close the connection when the rest is over DRAIN_LIMIT."""
        if self._first is not None:
            self._to_receive -= len(self._first)  # came with the header: not to be received
            self._first = None
        self._pending = memoryview(b"")
        if self._to_receive > DRAIN_LIMIT:
            self._let_go(in_step=False)
            return
        view = memoryview(self._buffer)
        try:
            while self._to_receive:
                count = self._source.recv_into(view[: self._to_receive])
                self._to_receive -= count
            self._source.finish()
        except RequestError:
            pass  # ERR changed for a body nobody reads: the reply is over, in step
        except FiledockError:
            self._let_go(in_step=False)  # the next command says the connection is gone
            return
        self._let_go(in_step=True)
