"""The server's deadlines with a fake clock, in milliseconds.

Each test here stands for one that used to wait on a real server timer (its
name says which); a few real-socket tests stay to prove the session wires the
timer: tests/integration/test_commands.py::test_idle_timeout_drops_a_silent_client,
tests/integration/test_admission.py::test_a_silent_connection_takes_no_slot_and_times_out,
tests/integration/test_security.py::test_handshake_timeout_covers_a_client_that_never_starts_tls,
tests/integration/test_security.py::test_a_right_token_after_failures_waits_the_delay_a_wrong_one_does.
"""

from __future__ import annotations

from filedock import protocol as p
from filedock.protocol.server import (
    NEED_DATA,
    AnswerDue,
    Deadline,
    ServerConnection,
    Violation,
)
from filedock.protocol.state import State
from filedock.server.auth import AuthGuard
from filedock.server.config import ServerConfig

IDLE_TIMEOUT_TEXT = b"ERR timeout disconnected for being idle: no request in %g s\n"
HANDSHAKE_TIMEOUT_LINE = b"ERR timeout no HELLO within the handshake timeout\n"


def from_config(config: ServerConfig, now: float = 0.0) -> ServerConnection:
    """A connection as a session makes it from the server's configuration."""
    return ServerConnection(
        now=now,
        max_line=config.max_line,
        handshake_timeout=config.handshake_timeout,
        idle_timeout=config.idle_timeout,
    )


def greet(conn: ServerConnection, now: float) -> None:
    conn.send(p.NameReply("Client01"))
    conn.receive_data(b"HELLO\n")
    assert conn.next_event() == p.Hello("")
    conn.send(p.WelcomeReply("Client01", "filedock"))
    conn.heard_at = now


def first_deadline(conn: ServerConnection, until: float, step: float = 0.01) -> float | None:
    """The first time (in ``step``s up to ``until``) at which handle_timer acts."""
    moment = 0.0
    while moment <= until:
        if conn.handle_timer(moment) is not None:
            return moment
        moment = round(moment + step, 6)
    return None


# -- idle -----------------------------------------------------------------------------


def test_idle_timeout_spares_a_client_that_keeps_talking() -> None:
    """Was tests/integration/test_commands.py (1.6 s): a PING every 0.15 s, over
    three idle timeouts."""
    conn = from_config(ServerConfig(idle_timeout=0.5))
    greet(conn, now=0.0)
    moment = 0.0
    for _ in range(12):
        moment += 0.15
        assert conn.handle_timer(moment) is None
        conn.receive_data(b"PING\n")
        assert conn.next_event() == p.Ping()
        assert conn.next_event() is NEED_DATA
        conn.heard_at = moment
    assert moment > 3 * 0.5
    assert conn.state is State.IDLE
    # and silence after the last line is idleness again
    due = conn.handle_timer(moment + 0.5)
    assert isinstance(due, Deadline)
    assert due.data == IDLE_TIMEOUT_TEXT % 0.5


def test_idle_timeout_drops_a_client_that_never_ends_a_line() -> None:
    """Was tests/integration/test_commands.py (0.5 s) and tests/integration/test_hardening.py::
    test_trickling_client_is_dropped_by_the_idle_timeout (0.5 s): a byte every
    0.1 s never completes a line; under the smallest line limit, the idle
    deadline closes it before the limit would."""
    max_line, idle = 64, 0.5
    conn = from_config(ServerConfig(idle_timeout=idle, max_line=max_line))
    greet(conn, now=0.0)
    moment, sent = 0.0, 0
    due = None
    while due is None and sent < 3 * max_line:
        moment = round(moment + 0.1, 6)
        conn.receive_data(b"a")
        sent += 1
        assert conn.next_event() is NEED_DATA  # no line: nothing is heard
        due = conn.handle_timer(moment)
    assert isinstance(due, Deadline)
    assert due.what == "idle"
    assert due.data == IDLE_TIMEOUT_TEXT % idle
    assert sent < max_line, f"{sent} bytes sent: the line limit could have closed it"
    assert moment >= idle
    assert conn.state is State.CLOSING


def test_no_idle_timeout_by_default() -> None:
    """Was tests/integration/test_commands.py (0.7 s): the default idle timeout is far away."""
    config = ServerConfig()
    conn = from_config(config)
    greet(conn, now=0.0)
    assert conn.handle_timer(0.7) is None
    assert conn.get_timer() == config.idle_timeout
    zero = from_config(ServerConfig(idle_timeout=0))
    greet(zero, now=0.0)
    assert zero.get_timer() is None


def test_the_idle_timer_starts_at_welcome() -> None:
    """Was tests/e2e/test_attack_outside.py (3 s and more, a subprocess): a HELLO
    whose answer waits (the source failed before), then silence; the idle
    timeout counts from the WELCOME, not from the HELLO."""
    conn = from_config(ServerConfig(idle_timeout=2))
    conn.send(p.NameReply("Client01"))
    conn.receive_data(b"HELLO token=right\n")
    assert conn.next_event() == p.Hello("token=right")
    conn.heard_at = 0.0
    conn.authorize(right=True)
    conn.answer_at(1.0)  # three failures before: the answer waits 1 s
    assert conn.handle_timer(1.0) == AnswerDue(True)
    conn.send(p.WelcomeReply("Client01", "filedock"))
    assert conn.get_timer() == 1.0 + 2
    assert conn.handle_timer(2.99) is None
    due = conn.handle_timer(3.0)
    assert isinstance(due, Deadline)
    assert due.data == IDLE_TIMEOUT_TEXT % 2


# -- the handshake ------------------------------------------------------------------


def test_greeted_client_is_not_hit_by_the_handshake_timeout() -> None:
    """Was tests/integration/test_admission.py (0.8 s)."""
    conn = from_config(ServerConfig(handshake_timeout=0.3))
    greet(conn, now=0.01)
    assert first_deadline(conn, until=0.8) is None
    assert conn.state is State.IDLE


def test_lines_before_hello_do_not_extend_the_handshake_timeout() -> None:
    """Was tests/integration/test_admission.py (0.4 s): a line every 50 ms before HELLO is
    answered ERR handshake; the deadline stays where the accept put it."""
    conn = from_config(ServerConfig(handshake_timeout=0.4))
    conn.send(p.NameReply("Client01"))
    moment, due = 0.0, None
    for _ in range(100):
        moment = round(moment + 0.05, 6)
        due = conn.handle_timer(moment)
        if due is not None:
            break
        conn.receive_data(b"PING\n")
        violation = conn.next_event()
        assert isinstance(violation, Violation)
        assert conn.send(violation.reply).startswith(b"ERR handshake ")
        conn.heard_at = moment
    assert due == Deadline("handshake", HANDSHAKE_TIMEOUT_LINE)
    assert moment == 0.4


def test_a_hello_trickled_without_an_end_is_dropped_at_the_handshake_timeout() -> None:
    """Was tests/e2e/test_attack_outside.py (2 s, a subprocess): HELLO sent a byte
    every 0.1 s, never ended, is no greeting; the handshake deadline ends it."""
    conn = from_config(ServerConfig(handshake_timeout=2))
    conn.send(p.NameReply("Client01"))
    moment, due = 0.0, None
    for byte in b"HELLO Client01 " + b"x" * 100:
        moment = round(moment + 0.1, 6)
        due = conn.handle_timer(moment)
        if due is not None:
            break
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    assert due == Deadline("handshake", HANDSHAKE_TIMEOUT_LINE)
    assert 1.5 < moment < 5.0
    assert conn.state is State.CLOSING  # the session frees its pool place at CLOSING


def test_a_tls_client_hello_trickled_is_dropped_at_the_handshake_timeout() -> None:
    """Was tests/e2e/test_attack_outside.py (2 s, a subprocess): a connection whose
    TLS layer is not up by the handshake deadline (a ClientHello trickled, never
    whole) is cut without a line, which would be garbage to a TLS client."""
    conn = from_config(ServerConfig(handshake_timeout=2))  # never named: TLS is not up
    assert first_deadline(conn, until=5.0, step=0.05) == 2.0
    assert conn.handle_timer(2.0) is None  # it happened once
    assert conn.state is State.CLOSING


# -- the delayed answer to a token ------------------------------------------------------


def answer_time(guard: AuthGuard[str], right: bool, now: float) -> float:
    """When a token given at ``now`` is answered, as greeting.hello holds it."""
    conn = from_config(ServerConfig())
    conn.send(p.NameReply("Client01"))
    conn.authorize(right)
    conn.answer_at(now + guard.answer_delay("a"))
    moment = now
    while conn.handle_timer(moment) is None:
        moment = round(moment + 0.05, 6)
        assert moment < now + 60
    return moment - now


def test_repeated_failures_are_answered_later_and_later() -> None:
    """Was tests/integration/test_security.py (0.75 s): the answers to failures 1, 2, 3, 4
    from one source wait 0, 0.25, 0.5 and 1 s (the delay the failures before
    earned)."""
    clock = [0.0]
    guard: AuthGuard[str] = AuthGuard(at_once=2, per_minute=100, clock=lambda: clock[0])
    waits = []
    for _ in range(4):
        waits.append(answer_time(guard, right=False, now=clock[0]))
        guard.failed("a")
    assert waits == [0.0, 0.25, 0.5, 1.0]


def test_past_the_failure_limit_the_right_token_still_gets_in_after_the_longest_delay() -> None:
    """Was tests/integration/test_security.py (1.8 s): past max_auth_failures_per_minute,
    even the right token waits the longest delay (the cap), and then gets in."""
    clock = [0.0]
    guard: AuthGuard[str] = AuthGuard(at_once=2, per_minute=2, clock=lambda: clock[0])
    guard.delay.cap = 1.5
    for _ in range(2):
        guard.failed("a")
    assert answer_time(guard, right=True, now=0.0) == 1.5
