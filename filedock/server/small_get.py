"""A ``GET`` of a small file whose digest is known, answered at once, without a task.

Such a file is read in one ``pread`` and its header and body are the
handler's reply, as a PING's is: pipelined GETs of small files then cost no
task, no flush and no ``sendfile`` each, and their replies go out together
in the session's batched writes (whose size bound and the transport's flow
control keep the memory a session holds bounded). Anything else (a larger
file, a digest not in memory, a read cut short) takes the task's way.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .. import protocol as p
from .repository import OpenedFile
from .transfer_log import TransferLog

if TYPE_CHECKING:
    from .session import Session

# Bodies up to this size are answered at once: one read, no worse for the loop
# than the hashing of a file this size (see repository.INLINE_HASH_BYTES).
SMALL_BODY_BYTES = 64 * 1024


def answer_at_once(s: Session, opened: OpenedFile) -> bytes | None:
    """The header and body answering a GET of ``opened``, or None when it is
    not small, its digest is not in memory, or it could not be read whole."""
    size = opened.size
    if size > SMALL_BODY_BYTES:
        return None
    digest = s.context.repository.hashes.known(opened.key)
    if digest is None:
        return None
    try:
        body = os.pread(opened.fd, size, 0)
    except OSError:
        return None  # the task's way says why
    if len(body) != size:
        return None  # shrank since it was opened: the task's way sends what it says
    transfer = TransferLog(s, opened.path, size)
    conn = s.conn
    conn.start()
    header = conn.send(p.FileReply(size, digest, opened.path))
    conn.body_sent()
    conn.done(time.monotonic())
    stats = s.context.stats
    stats.bytes_sent += size
    stats.transfers_completed["download"] += 1
    transfer.completed(digest)
    return header + body
