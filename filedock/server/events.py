"""What a session's line loop does with each event of its conversation.

The commands (:mod:`.commands`), the greeting (:mod:`.greeting`), the lines
the conversation refuses, the end of input; and a handler's failure, turned
into a reply or, where the conversation takes none, the end of the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import protocol as p
from ..errors import ProtocolError, RequestError
from ..protocol.server import BlankLine, BodyData, BodyEnd, EndOfInput, Violation
from ..protocol.state import TRANSITIONS, Step
from . import greeting
from .commands import HANDLERS, note_refusal

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")


def answer_failure(s: Session, exc: Exception, event: object = None) -> bytes | None:
    """A handler's failure (answering ``event``) as an ``ERR`` reply; a refusal
    is logged at INFO, a bug at ERROR."""
    if isinstance(exc, ProtocolError):
        s.context.stats.protocol_errors += 1
        _warn_once(s, "Protocol error from %s: %s", s.label(), exc)
        return _answer(s, p.ErrorReply(exc.code, str(exc)))
    if isinstance(exc, RequestError):
        if isinstance(event, p.CommandRequest):
            note_refusal(s, event, exc)
        return _answer(s, p.ErrorReply(exc.code, exc.text))
    # A bug: answer, log it, keep the server up.
    log.error("Internal error serving %s", s.label(), exc_info=exc)
    return _answer(s, p.ErrorReply(p.ErrorCode.INTERNAL, "internal server error"))


def _answer(s: Session, reply: p.ErrorReply) -> bytes | None:
    """``reply``, or, where the conversation takes none (a token's answer held,
    a body under way), the end of the connection."""
    state = s.conn.state
    if Step.ANSWER in TRANSITIONS[state]:
        return s.conn.send(reply)
    if not s.closing:
        if s.conn.answer_owed:
            greeting.forget_answer(s)  # no answer will come: the place is free
        s.abort("error")
    return None


def _violation(s: Session, violation: Violation) -> bytes:
    s.context.stats.protocol_errors += 1
    if violation.kind is not None:
        _warn_once(s, "%s from %s: %s", violation.kind, s.label(), violation.what)
    else:  # a plain bad request: a refusal like another
        s.context.note(
            "refused", "Refused a request from %s: %s", s.label(), violation.what, source=s.source
        )
    reply = violation.reply
    data = s.conn.send_last(reply) if violation.last else s.conn.send(reply)
    if violation.closes:
        s.finish("protocol-error")
    return data


def _end_of_input(s: Session, _: object) -> None:
    # The client has finished sending; an unended last line is dropped.
    if s.upload is not None:
        s.upload.lost("the client closed the connection")  # in the middle of its body
    s.conn.end()
    s.finish("eof")


def _body_data(s: Session, event: BodyData) -> None:
    assert s.upload is not None  # (READY is sent by the upload, which it holds)
    s.upload.receive(event.data)


def _body_end(s: Session, _: BodyEnd) -> None:
    assert s.upload is not None
    s.upload.body_end()


def _warn_once(s: Session, message: str, *args: object) -> None:
    """Protocol errors are logged once per connection, at INFO (a refusal)."""
    if not s.warned:
        s.warned = True
        s.context.note("protocol", message, *args, source=s.source)


_Handler = Callable[["Session", Any], bytes | None]


def _counted(kind: type, handler: _Handler) -> _Handler:
    """``handler``, counting its events in the statistics first."""

    def counted(s: Session, event: Any) -> bytes | None:
        s.stats.events[kind] += 1
        return handler(s, event)

    return counted


# What the statistics count as lines less the others: a PING is answered
# with no more than the line loop's own add (see stats.Statistics).
UNCOUNTED = p.Ping

# NEED_DATA and PAUSED are not here: they end a batch.
_UNWRAPPED: dict[type, _Handler] = {
    **HANDLERS,
    p.Hello: greeting.hello,
    Violation: _violation,
    EndOfInput: _end_of_input,
    BodyData: _body_data,
    BodyEnd: _body_end,
    BlankLine: lambda _, __: None,  # a person pressing Enter gets no answer
}
EVENT_HANDLERS: dict[type, _Handler] = {
    kind: handler if kind is UNCOUNTED else _counted(kind, handler)
    for kind, handler in _UNWRAPPED.items()
}
