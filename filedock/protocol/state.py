"""The server's conversation: its states and the one table of legal steps.

Who may send what in which state is read here and nowhere else (h11's
``_state.py`` is the model). :class:`~filedock.protocol.server.ServerConnection`
moves through this table; a step the table does not list raises
:class:`StateError`, so a driver that sends ``WELCOME`` twice, or a line in the
middle of a file body, fails where it happens instead of on the client.

The client sends lines only; what each line is worth depends on the state
(before ``WELCOME`` only ``HELLO`` and ``EXIT`` count). The server's side moves
the conversation: ``NAME``, ``WELCOME``, the start and end of a command that
waits, a ``FILE`` (or ``PART``) header and its body, the ``DIGEST`` after a
body whose header had none (v2), the ``READY`` that takes an upload's body
(whose last byte brings it back to the command that waits), its last reply.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """Where one connection's conversation is, as the server sees it."""

    ACCEPTED = "accepted"  # connected, not named yet (its TLS layer may still be coming)
    NAMED = "named"  # NAME sent: HELLO is due before the handshake deadline
    # A token given (its answer waits for its delay), or the registry asked for
    # a slot (its answer is a round trip away): the lines after HELLO wait.
    AUTHORIZING = "authorizing"
    IDLE = "idle"  # WELCOME sent: each line is answered; the idle deadline runs
    BUSY = "busy"  # a command that waits is running: the lines after it wait too
    SENDING = "sending"  # a FILE or PART header is out: exactly its body's bytes follow
    TRAILING = "trailing"  # a body announced without its digest is out: DIGEST is due
    RECEIVING = "receiving"  # READY is out: exactly the upload's rest comes, raw, not lines
    DROPPED = "dropped"  # its place went to a newcomer: it is told so after a moment
    CLOSING = "closing"  # the last reply is out (or none can be): input is dropped
    CLOSED = "closed"  # the connection is gone

    # Members are singletons: hash them as objects, in C, not by name in Python
    # (a step is a lookup in TRANSITIONS, several per connection).
    __hash__ = object.__hash__


class Step(Enum):
    """What moves a conversation from one state to the next."""

    NAME = "send NAME"
    WELCOME = "send WELCOME"
    AUTHORIZE = "hold the answer to a token"
    HOLD = "hold the answer to HELLO until the registry grants a slot"
    ANSWER = "send a reply that keeps the state"
    START = "start a command that waits"
    BODY = "send a FILE or PART header"
    BODY_SENT = "finish a file body"
    UNHASHED_BODY_SENT = "finish a body announced without its digest"
    TRAILER = "send the DIGEST (or ERR changed) after a body"
    READY = "send READY: an upload's body follows"
    BODY_RECEIVED = "take an upload's last body byte"
    DONE = "finish a command that waits"
    DROP = "drop it for a newcomer"
    CLOSE = "send the last reply (BYE, FULL, an ERR that closes)"
    END = "end without a reply"
    LOST = "lose the connection"

    __hash__ = object.__hash__  # (see State)


S = State
T = Step

# The legal steps: TRANSITIONS[state][step] is the state the step leads to.
# END and LOST are legal almost everywhere on purpose: a connection may end
# (an abort, a shutdown, a reset) whatever it is doing.
TRANSITIONS: dict[State, dict[Step, State]] = {
    S.ACCEPTED: {
        T.NAME: S.NAMED,
        T.DROP: S.DROPPED,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.NAMED: {
        T.ANSWER: S.NAMED,  # ERR handshake, ERR bad-encoding: the handshake goes on
        T.WELCOME: S.IDLE,
        T.AUTHORIZE: S.AUTHORIZING,
        T.HOLD: S.AUTHORIZING,
        T.DROP: S.DROPPED,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.AUTHORIZING: {
        T.WELCOME: S.IDLE,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.IDLE: {
        T.ANSWER: S.IDLE,
        T.START: S.BUSY,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.BUSY: {
        T.ANSWER: S.BUSY,
        T.BODY: S.SENDING,
        T.READY: S.RECEIVING,
        T.DONE: S.IDLE,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.SENDING: {
        # No line may follow a body cut short: it ends without a reply.
        T.BODY_SENT: S.BUSY,
        T.UNHASHED_BODY_SENT: S.TRAILING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.TRAILING: {
        # Only the digest of what was sent, or ERR changed, may follow; or a
        # last line (ERR shutdown) if the server stops while it is hashed.
        T.TRAILER: S.BUSY,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.RECEIVING: {
        # No reply until the body is in: the STORED (or ERR) comes after it.
        # But a last line (ERR shutdown) may cut it short.
        T.BODY_RECEIVED: S.BUSY,
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.DROPPED: {
        T.CLOSE: S.CLOSING,
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.CLOSING: {
        T.END: S.CLOSING,
        T.LOST: S.CLOSED,
    },
    S.CLOSED: {
        T.END: S.CLOSED,
    },
}

# The states in which the client's lines are read: in the others they wait
# (PAUSED) or are dropped.
READING_STATES = frozenset({S.NAMED, S.IDLE})


class StateError(RuntimeError):
    """A step the transition table does not allow: a bug in the driver, not the client."""

    def __init__(self, state: State, step: Step) -> None:
        super().__init__(f"cannot {step.value} in state {state.name}")
        self.state = state
        self.step = step


def next_state(state: State, step: Step) -> State:
    """The state ``step`` leads to from ``state``. Raises :class:`StateError`."""
    try:
        return TRANSITIONS[state][step]
    except KeyError:
        raise StateError(state, step) from None
