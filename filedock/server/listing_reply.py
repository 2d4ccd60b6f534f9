"""Sending a listing's records as the client takes them, a few pieces at a time.

A listing of 100,000 files is some 5 MB of record lines. Written whole, it
would sit in the transport's buffer until the client had read it all, and
with it every object it was made of; here the FILES line and the pieces
(encoded by the scan, :data:`~.repository.RUN_RECORDS` records at most each)
go out a write of about 64 KiB at a time, the next once the last has gone to
the socket, and each piece is let go once written.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .. import protocol as p
from .repository import EncodedListing
from .transfer import TransferError

if TYPE_CHECKING:
    from .session import Session

# Bytes written at a time: the transport's default high-water mark (64 KiB).
WRITE_BYTES = 64 * 1024


async def send_listing(s: Session, listing: EncodedListing) -> None:
    """Write ``FILES <n>`` and the ``n`` record lines of ``listing``.

    A listing that fits in one write goes out at once, as a short reply does.
    A longer one waits between writes; it raises :class:`TransferError` if the
    connection goes or the client takes nothing for the send timeout, and
    drops the connection if cancelled (the server stopping): records cut short
    cannot be followed by a line.
    """
    transport, flow = s.transport, s.flow
    if transport is None or s.closing:
        return
    pieces = listing.pieces
    batch = [s.conn.send(p.FilesReply(listing.count))]
    size = 0
    stall_limit = s.config.send_timeout
    for index in range(len(pieces)):
        piece, pieces[index] = pieces[index], b""  # let it go once written
        batch.append(piece)
        size += len(piece)
        if size < WRITE_BYTES:
            continue
        transport.write(b"".join(batch))
        batch.clear()
        size = 0
        if index == len(pieces) - 1:
            return  # all out: nothing to wait for
        try:
            if flow.paused:
                await flow.wait_resumed(stall_limit)
            else:
                await asyncio.sleep(0)  # the socket took it all: let others run
        except asyncio.CancelledError:
            s.abort("shutdown")
            raise
        if s.closing or transport.is_closing():
            raise TransferError("connection closed")
    if batch:
        transport.write(b"".join(batch))
