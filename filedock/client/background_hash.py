"""SHA-256 on a thread of its own, fed in order by a reader on another one.

``hashlib`` lets go of the GIL while it hashes a large buffer, and so does a
socket read (and TLS decryption), so a stream hashed here is read at the pace
of the slower of the two instead of their sum. What :meth:`update` is given is
copied (the caller's buffer is the caller's again as soon as it returns), in
batches large enough that handing one over costs nothing next to hashing it.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# Bytes handed to the thread at a time, and batches it may be behind by (4 MiB
# queued at most). With 256 KiB a GiB took 42,000 futex calls to hand over,
# and a GiB over TLS read into memory about 5% slower than with 1 MiB.
BATCH = 1024 * 1024
DEPTH = 4


class BackgroundSha256:
    """A SHA-256 hashed on its own thread; :meth:`hexdigest` waits for it.

    :meth:`stop` ends the thread when the digest is no longer wanted (a body
    closed early); a hash never stopped nor finished leaves its thread
    waiting, so the stream that owns one must always do either.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._batch = bytearray()
        self._batches: queue.Queue[bytearray | None] = queue.Queue(maxsize=DEPTH)
        self._result: str | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="filedock-stream-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            self._digest.update(batch)

    def update(self, data: ReadableBuffer, /) -> None:
        if self._ended:
            raise ValueError("update of a finished hash")
        self._batch += data
        if len(self._batch) >= BATCH:
            self._batches.put(self._batch)  # waits while the thread is DEPTH batches behind
            self._batch = bytearray()

    def hexdigest(self) -> str:
        if self._result is None:
            if self._ended:
                raise ValueError("the hash was stopped before its end")
            if self._batch:
                self._batches.put(self._batch)
            self._end()
            self._result = self._digest.hexdigest()
        return self._result

    def stop(self) -> None:
        """No digest is wanted: the thread ends, what it was given unhashed."""
        if not self._ended:
            self._end()

    def _end(self) -> None:
        self._ended = True
        self._batch = bytearray()
        self._batches.put(None)
        self._thread.join()
