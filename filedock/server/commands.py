"""One handler per request type of the command table (:data:`HANDLERS`).

A handler answers at once with the reply's bytes, or starts the session's one
task (listing the folder, sending a file) and returns ``None``: the lines after
it wait until the task is done, so replies stay in request order.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import protocol as p
from ..errors import RequestError
from ..protocol.state import State
from . import memory, uploads
from .activity import Activity
from .listing_reply import send_listing
from .repository import (
    INLINE_STEPS,
    EncodedListing,
    ListingTooLong,
    OpenedFile,
    WalkTooLong,
)
from .small_get import answer_at_once
from .stats import stats_records
from .transfer import TransferError, count_stall, send_body
from .transfer_log import TransferLog
from .unhashed import send_unhashed
from .workers import Stopping

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

Handler = Callable[["Session", Any], bytes | None]
# What a command does with the file it names, once opened (in a worker if its
# walk is long): send it, its digest, or a part of it.
Answer = Callable[["Session", OpenedFile], Coroutine[Any, Any, None]]


def _ping(_: Session, __: p.Ping) -> bytes:
    # Encoded once, and not through conn.send: PING is most of a pipelined load,
    # and a reply in IDLE keeps the state (Step.ANSWER), so there is nothing to check.
    return p.PONG


def _who(s: Session, _: p.Who) -> bytes:
    return s.conn.send(p.WhoReply(tuple(s.context.registry.connected_names())))


def _uptime(s: Session, _: p.Uptime) -> bytes:
    return s.conn.send(p.UptimeReply(s.context.uptime()))


def _about(s: Session, _: p.About) -> bytes:
    return s.conn.send(p.AboutReply(s.context.about))


def _help(s: Session, _: p.Help) -> bytes:
    # A v1 greeting hears v1's list, word for word.
    return s.conn.send(p.HelpReply(p.HELP_TEXT if s.conn.protocol > 1 else p.HELP_TEXT_V1))


def _status(s: Session, _: p.Status) -> bytes:
    # Encoded, records and all, only when the registry changed (see StatusReplies).
    return s.conn.answer(s.context.status.reply(s.name))


def _stats(s: Session, _: p.Stats) -> None:
    # From a task, not at once: the batch it came in is counted whole first
    # (the line loop adds its lines at the batch's end; see stats.Statistics).
    s.start(_send_stats(s))


async def _send_stats(s: Session) -> None:
    records = stats_records(s.context.stats.samples())
    follow = b"".join(p.encode_stat_record(p.StatRecord(name, value)) for name, value in records)
    s.send(p.StatsReply(len(records)), follow)


def _say(s: Session, request: p.Say) -> bytes:
    return s.conn.send(p.AckReply(request.text))


def _message(s: Session, request: p.Message) -> bytes | None:
    # A line that is no file is echoed at once. The lookup is cheap checks
    # first, then a walk on the loop only as long as a plain GET's; a
    # longer one goes to a worker.
    text = request.text
    try:
        opened = _open_here(s, text)
    except RequestError:
        return s.conn.send(p.AckReply(text))
    _serve(s, request, text, opened, or_echo=True)
    return None


def _get(s: Session, request: p.Get) -> bytes | None:
    opened = _open_here(s, request.path)  # a refusal raises: ERR
    if opened is not None:
        try:
            reply = answer_at_once(s, opened)
        except BaseException:
            opened.close()
            raise
        if reply is not None:
            opened.close()
            return reply
    _serve(s, request, request.path, opened)
    return None


def _hash(s: Session, request: p.Hash) -> bytes | None:
    _serve(s, request, request.path, _open_here(s, request.path), _send_digest)
    return None


def _range(s: Session, request: p.Range) -> bytes | None:
    answer = functools.partial(_send_part, request=request)
    _serve(s, request, request.path, _open_here(s, request.path), answer)
    return None


def _put(s: Session, request: p.Put) -> bytes | None:
    return uploads.start(s, request)  # a refusal that needs no disk: ERR at once


def _list(s: Session, request: p.ListFiles) -> None:
    s.start(_send_listing(s, request.folder), Activity("list", request.folder, None))


def _exit(s: Session, _: p.Exit) -> bytes:
    data = s.conn.send(p.ByeReply())
    s.finish("exit")
    return data


# One handler per entry of protocol.COMMANDS (a test checks they match).
HANDLERS: dict[type[p.CommandRequest], Handler] = {
    p.Ping: _ping,
    p.Who: _who,
    p.Uptime: _uptime,
    p.About: _about,
    p.Help: _help,
    p.Status: _status,
    p.Stats: _stats,
    p.Say: _say,
    p.Message: _message,
    p.Get: _get,
    p.Hash: _hash,
    p.Range: _range,
    p.Put: _put,
    p.ListFiles: _list,
    p.Exit: _exit,
}


def note_refusal(s: Session, request: p.CommandRequest, exc: RequestError) -> None:
    """Log a refused request at INFO, rate-limited: which, from whom, and why.

    A file that is not there is an answer, not a refusal: not logged."""
    if exc.code == p.ErrorCode.NOT_FOUND:
        return
    line = p.COMMANDS_BY_REQUEST[type(request)].encode(request)
    s.context.note(
        "refused",
        "Refused %r from %s: %s: %s",
        line, s.label(), exc.code, exc.text,
        source=s.source,
    )  # fmt: skip


# Each request type's verb, lowercase, as the statistics count requests
# (a line that is no command word is a "message").
REQUEST_VERBS: dict[type, str] = {c.request: c.word or "message" for c in p.COMMANDS}


# -- commands that wait ---------------------------------------------------------


def _open_here(s: Session, path: str) -> OpenedFile | None:
    """``path`` opened on the loop, or None when its walk is long enough for a worker."""
    try:
        return s.context.repository.open(path, max_steps=INLINE_STEPS)
    except WalkTooLong:
        return None


# The verb a session's activity shows for each request that names a file.
_VERBS: dict[type[p.CommandRequest], str] = {
    p.Get: "get",
    p.Message: "get",  # a file asked for by its name alone
    p.Hash: "hash",
    p.Range: "range",
}


def _serve(
    s: Session,
    request: p.Get | p.Message | p.Hash | p.Range,
    path: str,
    opened: OpenedFile | None,
    answer: Answer | None = None,
    *,
    or_echo: bool = False,
) -> None:
    answer = answer or _send_opened
    verb = _VERBS[type(request)]
    if opened is None:
        work = _send_file(s, request, path, answer, or_echo=or_echo)
        s.start(work, Activity(verb, path, None))
        return
    size = None if isinstance(request, p.Hash) else opened.size  # a HASH has no body
    task = s.start(answer(s, opened), Activity(verb, path, size))
    # Closed however the task ends, even cancelled before it ever ran.
    task.add_done_callback(lambda _: opened.close())


# A listing this long leaves megabytes of freed pages in its worker's arena.
_TRIM_AFTER_RECORDS = 20_000


async def _send_listing(s: Session, folder: str | None = None) -> None:
    workers, cache = s.context.workers, s.context.listing_cache
    listing = cache.lookup(folder) if cache is not None else None
    scanned = listing is None
    if listing is None:
        listing = await _scan_listing(s, folder)
        if listing is None:
            return
    # A listing from the cache left no freed pages behind: nothing to give back.
    large = scanned and listing.count >= _TRIM_AFTER_RECORDS
    try:
        await send_listing(s, listing)
    except TransferError as exc:  # the client went away, or stopped reading
        count_stall(s.context.stats, exc)
        s.abort()
    del listing  # its pieces are freed by now: let the pages go back too
    if large:
        with contextlib.suppress(Stopping):
            await workers.metadata.run(memory.give_back)


async def _scan_listing(s: Session, folder: str | None) -> EncodedListing | None:
    """The listing read in a worker (and kept in the cache if it may be), or None
    with the error sent."""
    workers, repository, cache = s.context.workers, s.context.repository, s.context.listing_cache
    watches = cache.begin() if cache is not None else None
    listing: EncodedListing | None = None
    try:
        try:
            # Most folders are small: read here, with no round trip to a thread
            # (worth more than the scan itself); a larger one is given up within
            # a bound and read again in a worker, its records encoded there too.
            listing = repository.reply_records(folder, workers.cancel.is_set, watches, inline=True)
        except ListingTooLong:
            listing = await workers.metadata.run(
                repository.reply_records, folder, workers.cancel.is_set, watches
            )
    except RequestError as exc:
        s.send(p.ErrorReply(exc.code, exc.text))
    except OSError as exc:
        log.warning("Cannot list the repository for %s: %s", s.label(), exc.strerror)
        s.send(p.ErrorReply(p.ErrorCode.INTERNAL, "the folder cannot be read"))
    finally:
        if cache is not None and watches is not None:
            cache.end(folder, watches, listing)
    return listing


async def _send_file(
    s: Session, request: p.CommandRequest, path: str, answer: Answer, *, or_echo: bool = False
) -> None:
    """Open ``path`` in a worker and ``answer`` ``request`` with it; with
    ``or_echo``, echo the line if there is no such file."""
    try:
        opened = await s.context.workers.metadata.run(
            s.context.repository.open, path, abandoned=OpenedFile.close
        )
    except RequestError as exc:  # any OS error on a path is one of these
        if or_echo:
            s.send(p.AckReply(path))
            return
        note_refusal(s, request, exc)
        s.send(p.ErrorReply(exc.code, exc.text))
        return
    if s.activity is not None and not isinstance(request, p.Hash):
        s.activity.size = opened.size  # known now (a HASH has no body)
    with opened:
        await answer(s, opened)


async def _digest(s: Session, opened: OpenedFile) -> str | None:
    """The file's SHA-256 (hashed in the workers if not known); None once the
    reason there is none was sent."""
    try:
        return await s.context.repository.hashes.sha256(opened, s.source)
    except RequestError as exc:  # changed before the header: the connection goes on
        s.send(p.ErrorReply(exc.code, exc.text))
    except OSError as exc:
        log.warning("Cannot read %r for %s: %s", opened.path, s.label(), exc.strerror)
        s.send(p.ErrorReply(p.ErrorCode.INTERNAL, "file cannot be read"))
    return None


async def _send_opened(s: Session, opened: OpenedFile) -> None:
    if s.conn.protocol > 1:
        # v2 never makes the client wait for a hashing, nor for the store on
        # disk: a digest not in memory follows the body.
        digest = s.context.repository.hashes.known(opened.key)
        if digest is None:
            await send_unhashed(s, opened)
            return
    else:
        digest = await _digest(s, opened)
        if digest is None:
            return
    s.send(p.FileReply(opened.size, digest, opened.path))
    transfer = TransferLog(s, opened.path, opened.size)
    if await _send_body(s, opened, 0, transfer):
        transfer.completed(digest)


async def _send_digest(s: Session, opened: OpenedFile) -> None:
    digest = await _digest(s, opened)
    if digest is not None:
        mtime = listed_mtime(opened.key.mtime_ns)
        s.send(p.HashReply(p.FileDigest(opened.path, opened.size, mtime, digest)))


async def _send_part(s: Session, opened: OpenedFile, request: p.Range) -> None:
    digest = await _digest(s, opened)
    if digest is None:
        return
    offset, size = request.offset, opened.size
    if digest != request.sha256:
        text = "the file is no longer the one with that SHA-256: fetch it whole again"
        s.send(p.ErrorReply(p.ErrorCode.CHANGED, text))
    elif offset > size:
        text = f"offset {offset} is past the end of the file ({size} bytes)"
        s.send(p.ErrorReply(p.ErrorCode.BAD_RANGE, text))
    else:
        s.send(p.PartReply(offset, size, digest, opened.path))
        if offset:
            s.context.stats.transfers_resumed["download"] += 1
        transfer = TransferLog(s, opened.path, size)
        if await _send_body(s, opened, offset, transfer):
            transfer.completed(digest, offset)


async def _send_body(s: Session, opened: OpenedFile, offset: int, transfer: TransferLog) -> bool:
    """Send the body a FILE or PART header announced; False if it was cut short."""
    transport, activity, stats = s.transport, s.activity, s.context.stats
    assert transport is not None
    assert activity is not None
    try:
        # Exactly the announced size goes out, so the stream stays in step
        # even if the file grew or changed meanwhile: the client checks the
        # digest, and changed bytes are never saved as the announced file.
        await send_body(transport, s.flow, opened, s.config.send_timeout, activity, stats, offset)
    except TransferError as exc:  # shrank, or the client went away: cut
        stats.transfers_failed["download"] += 1
        count_stall(stats, exc)
        transfer.cut_short(exc, offset)
        s.abort()
        return False
    stats.transfers_completed["download"] += 1
    if s.conn.state is State.SENDING:  # (not if the connection went as the last bytes left)
        s.conn.body_sent()
    return True


def listed_mtime(mtime_ns: int) -> datetime:
    """A file's mtime as ``FILES`` shows it: whole seconds of ``st_mtime`` (a
    float of seconds and nanoseconds, as ``os.stat`` makes it), in UTC."""
    seconds, nanoseconds = divmod(mtime_ns, 1_000_000_000)
    return datetime.fromtimestamp(int(seconds + nanoseconds * 1e-9), UTC)
