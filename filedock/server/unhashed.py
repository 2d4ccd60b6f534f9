"""Sending a file whose digest is not known yet (v2): the body at once, its digest after.

``FILE <size> - <path>``, the body by ``sendfile`` (or in chunks under TLS),
then ``DIGEST <sha256>``; or ``ERR changed`` when the file changed during the
send. The digest is hashed beside the send, in the hashing workers, by the
digest cache's own hashing: a second client asking for the same file meanwhile
joins that one hashing, and a send cut short leaves it to finish and be cached,
so a resume (``HASH``, ``RANGE``) finds the digest known.

Why beside, not through: a cold 1 GiB download (the library, to disk,
verified; 2 CPUs shared with other work, so the figures swing) took, median
of 3 and then of 5 rounds, hashed beside / read through user space to hash
exactly the bytes sent:

    plain TCP: 1.92 s / 2.61 s, then 4.50 s / 4.46 s (a loaded machine)
    TLS:       4.70 s / 4.07 s, then 4.36 s / 6.22 s

Neither wins under TLS (where the chunks go through user space anyway);
on plain TCP beside keeps the body zero-copy and was the faster on the quiet
run. Beside is kept for both. The bytes hashed are the bytes sent as far as
the file's key (device, inode, size, mtime, ctime) tells: it is checked once
the body is out and once the hashing is done, and any change is ERR changed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .. import protocol as p
from ..errors import RequestError
from ..protocol.state import State
from .repository import OpenedFile
from .transfer import FileShrank, TransferError, count_stall, send_body, send_padding
from .transfer_log import TransferLog

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

_CHANGED_TEXT = "the file changed while it was sent; fetch it again"


async def send_unhashed(s: Session, opened: OpenedFile) -> None:
    """Answer a v2 ``GET`` of ``opened``, whose digest is not known, without a wait."""
    if s.closing:
        return  # the client went while the file was opened: nothing to send, nor hash
    stats = s.context.stats
    completed = False
    try:
        completed = await _send_and_follow(s, opened)
    finally:  # however it ends, cancelled included: completed only with its DIGEST
        outcome = stats.transfers_completed if completed else stats.transfers_failed
        outcome["download"] += 1


async def _send_and_follow(s: Session, opened: OpenedFile) -> bool:
    """The header, the body, then its DIGEST (or ERR changed); whether the DIGEST went out."""
    hashing = s.context.repository.hashes.hashing(opened, s.source)
    s.send(p.FileReply(opened.size, None, opened.path))
    transfer = TransferLog(s, opened.path, opened.size)
    shrank = await _send_whole_body(s, opened, transfer)
    if shrank is None or s.conn.state is not State.SENDING:
        return False  # cut short (the hashing goes on, and is cached), or the connection went
    s.conn.body_sent()
    try:
        digest = (await asyncio.shield(hashing)).digest
    except asyncio.CancelledError:  # the client left (or the server stops) before the digest
        ended = TransferError("the connection ended before the DIGEST")
        ended.sent = opened.size
        transfer.cut_short(ended)
        raise
    except RequestError as exc:  # FileChanged; Stopping: the server shuts down
        if exc.code != p.ErrorCode.CHANGED:
            s.send(p.ErrorReply(exc.code, exc.text))
            return False
        shrank = True
    except OSError as exc:
        log.warning("Cannot read %r for %s: %s", opened.path, s.label(), exc.strerror)
        s.send(p.ErrorReply(p.ErrorCode.INTERNAL, "file cannot be read"))
        return False
    if shrank or not opened.served_whole():
        transfer.changed()
        s.send(p.ErrorReply(p.ErrorCode.CHANGED, _CHANGED_TEXT))
        return False
    s.send(p.DigestReply(digest))
    transfer.completed(digest)
    return True


async def _send_whole_body(s: Session, opened: OpenedFile, transfer: TransferLog) -> bool | None:
    """Send the body; whether the file shrank on the way (its rest made up
    with zeros, for the line after it to say so), or None if it was cut short."""
    transport, activity = s.transport, s.activity
    assert transport is not None
    assert activity is not None
    stall_limit = s.config.send_timeout
    try:
        try:
            await send_body(transport, s.flow, opened, stall_limit, activity, s.context.stats)
        except FileShrank as exc:
            await send_padding(transport, s.flow, opened.size - exc.sent, stall_limit)
            return True
    except TransferError as exc:  # the client went away, or stalled
        count_stall(s.context.stats, exc)
        transfer.cut_short(exc)
        s.abort()
        return None
    return False
