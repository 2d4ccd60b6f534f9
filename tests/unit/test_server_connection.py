"""ServerConnection, the server's conversation without a network: the
handshake, one command that waits at a time, the deadlines with a fake clock,
and every input fed all at once and one byte at a time."""

from __future__ import annotations

import pytest

from filedock import protocol as p
from filedock.protocol.server import (
    BLANK_LINE,
    END_OF_INPUT,
    NEED_DATA,
    PAUSED,
    AnswerDue,
    Deadline,
    Event,
    ServerConnection,
    Violation,
)
from filedock.protocol.state import State, StateError

HANDSHAKE, IDLE = 10.0, 300.0


def connection(*, now: float = 0.0, idle: float = IDLE, max_line: int = 64) -> ServerConnection:
    return ServerConnection(
        now=now, max_line=max_line, handshake_timeout=HANDSHAKE, idle_timeout=idle
    )


def named() -> ServerConnection:
    conn = connection()
    assert conn.send(p.NameReply("Client01")) == b"NAME Client01\n"
    return conn


def greeted(now: float = 0.0) -> ServerConnection:
    conn = named()
    conn.receive_data(b"HELLO\n")
    assert conn.next_event() == p.Hello("")
    conn.send(p.WelcomeReply("Client01", "filedock"))
    conn.heard_at = now
    return conn


def events(conn: ServerConnection) -> list[Event]:
    """Every event up to NEED_DATA, PAUSED or the end, that one included."""
    seen: list[Event] = []
    for _ in range(1000):
        event = conn.next_event()
        seen.append(event)
        if event in (NEED_DATA, PAUSED, END_OF_INPUT) or isinstance(event, Violation):
            return seen
    raise AssertionError("no end of events")


# -- the handshake -----------------------------------------------------------------


def test_nothing_is_read_before_the_name_is_sent() -> None:
    conn = connection()
    conn.receive_data(b"HELLO\n")  # a hasty TLS client
    assert conn.next_event() is PAUSED
    conn.send(p.NameReply("Client01"))
    assert conn.next_event() == p.Hello("")


def test_only_hello_and_exit_count_before_the_greeting() -> None:
    conn = named()
    conn.receive_data(b"\n  \nPING\nEXIT\n")
    violation = conn.next_event()
    assert isinstance(violation, Violation)
    assert violation.reply == p.ErrorReply(p.ErrorCode.HANDSHAKE, "say HELLO first")
    assert violation.kind == "Handshake error"
    assert not violation.closes
    assert conn.send(violation.reply).startswith(b"ERR handshake")
    assert conn.next_event() == p.Exit()
    assert conn.send(p.ByeReply()) == b"BYE\n"
    assert conn.state is State.CLOSING
    assert conn.next_event() is PAUSED


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 443\r\nHELLO\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc0\x00\x02\x0b\xdc\x04\x01\xbb",
    ],
    ids=["v1", "v2"],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["at-once", "byte-by-byte"])
def test_a_proxy_header_without_the_option_is_a_violation_that_closes(
    header: bytes, chunked: bool
) -> None:
    # Before this, a v1 header was answered "ERR handshake say HELLO first" and the
    # handshake went on; a v2 one gave "ERR bad-encoding" or "ERR handshake".
    conn = named()
    for chunk in [header[i : i + 1] for i in range(len(header))] if chunked else [header]:
        conn.receive_data(chunk)
        event = conn.next_event()
        if event is not NEED_DATA:
            break
    assert isinstance(event, Violation)
    assert event.reply.code == p.ErrorCode.HANDSHAKE
    assert event.reply.text == "PROXY protocol header not expected"
    assert event.closes
    assert conn.send_last(event.reply) == b"ERR handshake PROXY protocol header not expected\n"
    assert conn.state is State.CLOSING


@pytest.mark.parametrize(
    "opening",
    [b"\r\n\r\nHELLO\n", b"\r\nHELLO\n", b"PROX\nHELLO\n", b"PROXYHELLO\nHELLO\n"],
)
def test_what_merely_starts_like_a_proxy_header_is_read_as_lines(opening: bytes) -> None:
    conn = named()
    conn.receive_data(opening)
    seen = events(conn)
    while isinstance(seen[-1], Violation) and not seen[-1].closes:
        seen += events(conn)
    assert p.Hello("") in seen


def test_blank_lines_that_may_start_a_signature_wait_for_more() -> None:
    conn = named()
    conn.receive_data(b"\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"HELLO\n")
    assert conn.next_event() == p.Hello("")


def test_welcome_opens_the_commands() -> None:
    conn = named()
    conn.receive_data(b"hello me 1.0\nping\n")
    assert conn.next_event() == p.Hello("me 1.0")
    conn.send(p.WelcomeReply("Client01", "filedock"))
    assert conn.state is State.IDLE
    assert conn.next_event() == p.Ping()


def test_a_second_welcome_is_refused() -> None:
    conn = greeted()
    with pytest.raises(StateError, match="WELCOME"):
        conn.send(p.WelcomeReply("Client01", "filedock"))


def test_bad_encoding_before_the_greeting_is_answered_and_the_handshake_goes_on() -> None:
    conn = named()
    conn.receive_data(b"\xff\nHELLO\n")
    violation = conn.next_event()
    assert isinstance(violation, Violation)
    assert violation.reply.code == p.ErrorCode.BAD_ENCODING
    conn.send(violation.reply)
    assert conn.next_event() == p.Hello("")


# -- requests ----------------------------------------------------------------------

PIPELINED = b"PING\r\nwho\n\nget\nGET a.txt\nsome words\n\xfe\nUPTIME\n"


def expected_pipelined() -> list[object]:
    return [
        p.Ping(),
        p.Who(),
        BLANK_LINE,  # no answer, but a line all the same
        # a verb without its argument: answered, not logged as a violation
        Violation(p.ErrorReply(p.ErrorCode.BAD_REQUEST, "usage: GET <file>"), None, ""),
        p.Get("a.txt"),
        p.Message("some words"),
        "bad-encoding",
        p.Uptime(),
        NEED_DATA,
    ]


def take_all(conn: ServerConnection) -> list[object]:
    seen: list[object] = []
    for _ in range(100):
        event = conn.next_event()
        if isinstance(event, Violation):
            conn.send(event.reply)
            if event.reply.code == p.ErrorCode.BAD_ENCODING:
                seen.append("bad-encoding")
                continue
            seen.append(Violation(event.reply, event.kind, ""))
            continue
        seen.append(event)
        if event is NEED_DATA:
            return seen
    raise AssertionError("no end of events")


def test_pipelined_lines_come_out_in_order() -> None:
    conn = greeted()
    conn.receive_data(PIPELINED)
    seen = take_all(conn)
    assert [type(e) for e in seen] == [type(e) for e in expected_pipelined()]
    assert seen[4:6] == [p.Get("a.txt"), p.Message("some words")]


def test_one_byte_at_a_time_gives_the_same_events_as_all_at_once() -> None:
    at_once = greeted()
    at_once.receive_data(PIPELINED)
    whole = [e for e in take_all(at_once) if e is not NEED_DATA]
    trickled = greeted()
    pieces: list[object] = []
    for byte in PIPELINED:
        trickled.receive_data(bytes([byte]))
        pieces.extend(e for e in take_all(trickled) if e is not NEED_DATA)
    assert pieces == whole


def test_a_line_over_the_limit_is_a_violation_that_closes() -> None:
    conn = greeted()
    conn.receive_data(b"x" * 100)
    violation = conn.next_event()
    assert isinstance(violation, Violation)
    assert violation.closes
    assert violation.kind == "Protocol error"
    conn.send(violation.reply)
    assert conn.state is State.CLOSING
    conn.receive_data(b"PING\n")  # dropped
    assert conn.next_event() is PAUSED


def test_a_command_that_waits_pauses_the_lines_after_it() -> None:
    conn = greeted()
    conn.receive_data(b"LIST\nPING\n")
    assert conn.next_event() == p.ListFiles()
    conn.start()
    assert conn.next_event() is PAUSED
    assert conn.buffered == len(b"PING\n")
    conn.send(p.FilesReply(0))  # a command that waits answers while busy
    conn.done(now=1.0)
    assert conn.next_event() == p.Ping()


@pytest.mark.parametrize(
    "header", [p.FileReply(3, "0" * 64, "a.txt"), p.PartReply(1, 3, "0" * 64, "a.txt")]
)
def test_a_file_body_admits_no_line_until_it_is_out(header: p.Reply) -> None:
    conn = greeted()
    conn.start()
    conn.send(header)
    assert conn.state is State.SENDING
    with pytest.raises(StateError):
        conn.send(p.AckReply("hello"))
    with pytest.raises(StateError):  # a body cut short is followed by no line
        conn.send(p.ErrorReply(p.ErrorCode.SHUTDOWN, "server is shutting down"))
    conn.body_sent()
    conn.done(now=1.0)
    assert conn.state is State.IDLE


def test_two_commands_that_wait_cannot_run_at_once() -> None:
    conn = greeted()
    conn.start()
    with pytest.raises(StateError):
        conn.start()


# -- the end of input --------------------------------------------------------------


def test_eof_after_the_lines_in_hand_ends_the_conversation() -> None:
    conn = greeted()
    conn.receive_data(b"PING\nWHO")  # an unended last line is dropped
    conn.receive_data(b"")
    assert events(conn) == [p.Ping(), END_OF_INPUT]


def test_eof_before_the_greeting() -> None:
    conn = named()
    conn.receive_data(b"")
    assert conn.next_event() is END_OF_INPUT


def test_eof_while_busy_waits_for_the_command() -> None:
    conn = greeted()
    conn.receive_data(b"LIST\nPING\n")
    assert conn.next_event() == p.ListFiles()
    conn.start()
    conn.receive_data(b"")
    assert conn.next_event() is PAUSED
    conn.done(now=1.0)
    assert events(conn) == [p.Ping(), END_OF_INPUT]


@pytest.mark.parametrize("state", [State.ACCEPTED, State.AUTHORIZING, State.CLOSING])
def test_eof_where_no_line_is_read_is_kept_for_later_or_dropped(state: State) -> None:
    conn = connection()
    if state is not State.ACCEPTED:
        conn.send(p.NameReply("Client01"))
    if state is State.AUTHORIZING:
        conn.authorize(right=True)
    if state is State.CLOSING:
        conn.send(p.ByeReply())
    conn.receive_data(b"")
    assert conn.next_event() is PAUSED
    if state is State.AUTHORIZING:
        conn.send(p.WelcomeReply("Client01", "filedock"))
        assert conn.next_event() is END_OF_INPUT


# -- the handshake deadline ----------------------------------------------------------


def test_the_handshake_deadline_counts_from_the_accept() -> None:
    conn = connection(now=100.0)
    conn.send(p.NameReply("Client01"))
    assert conn.get_timer() == 100.0 + HANDSHAKE
    assert conn.handle_timer(100.0 + HANDSHAKE - 0.001) is None
    assert conn.state is State.NAMED


def test_lines_before_hello_do_not_push_the_handshake_deadline_back() -> None:
    conn = named()
    conn.receive_data(b"PING\n")
    conn.heard_at = 5.0
    assert isinstance(conn.next_event(), Violation)
    assert conn.get_timer() == HANDSHAKE


def test_no_hello_in_time_is_told_and_closed() -> None:
    conn = named()
    due = conn.handle_timer(HANDSHAKE)
    assert due == Deadline("handshake", b"ERR timeout no HELLO within the handshake timeout\n")
    assert conn.state is State.CLOSING
    assert conn.get_timer() is None


def test_no_tls_handshake_in_time_is_cut_without_a_line() -> None:
    conn = connection()  # not named: its TLS layer is not set up yet
    assert conn.handle_timer(HANDSHAKE + 1) == Deadline("handshake", None)
    assert conn.state is State.CLOSING


def test_a_greeted_client_is_not_hit_by_the_handshake_deadline() -> None:
    conn = greeted(now=1.0)
    assert conn.handle_timer(HANDSHAKE + 1) is None
    assert conn.state is State.IDLE


# -- the idle deadline -------------------------------------------------------------


def test_a_silent_greeted_client_is_dropped_at_the_idle_deadline() -> None:
    conn = greeted(now=2.0)
    assert conn.get_timer() == 2.0 + IDLE
    assert conn.handle_timer(2.0 + IDLE - 0.01) is None
    due = conn.handle_timer(2.0 + IDLE)
    assert isinstance(due, Deadline)
    assert due.what == "idle"
    assert due.data == b"ERR timeout disconnected for being idle: no request in 300 s\n"
    assert conn.state is State.CLOSING


def test_a_client_that_keeps_talking_is_spared() -> None:
    conn = greeted(now=0.0)
    for second in range(1, 1000, 100):
        conn.receive_data(b"PING\n")
        assert conn.next_event() == p.Ping()
        conn.heard_at = float(second)
        assert conn.handle_timer(float(second) + IDLE - 1) is None
    assert conn.state is State.IDLE


def test_a_client_that_never_ends_a_line_is_idle() -> None:
    conn = greeted(now=0.0)
    for byte in b"PING PING PING":
        conn.receive_data(bytes([byte]))  # no line: the driver hears nothing
        assert conn.next_event() is NEED_DATA
    due = conn.handle_timer(IDLE)
    assert isinstance(due, Deadline)
    assert due.what == "idle"


def test_a_command_in_progress_is_not_idleness() -> None:
    conn = greeted(now=0.0)
    conn.start()
    assert conn.get_timer() is None
    assert conn.handle_timer(10 * IDLE) is None
    conn.done(now=10 * IDLE)  # idleness counts from the end of the work
    assert conn.get_timer() == 11 * IDLE


def test_no_idle_deadline_when_it_is_zero() -> None:
    conn = connection(idle=0.0)
    conn.send(p.NameReply("Client01"))
    conn.send(p.WelcomeReply("Client01", "filedock"))
    assert conn.get_timer() is None
    assert conn.handle_timer(1e9) is None


# -- the delayed answer to a token -------------------------------------------------


@pytest.mark.parametrize("right", [True, False])
def test_a_token_is_answered_at_its_delay_right_or_wrong(right: bool) -> None:
    conn = named()
    conn.receive_data(b"HELLO token=abc\nPING\n")
    assert conn.next_event() == p.Hello("token=abc")
    conn.authorize(right)
    assert conn.get_timer() is None  # no handshake deadline now; waiting for its turn
    assert conn.next_event() is PAUSED
    conn.answer_at(4.0)
    assert conn.get_timer() == 4.0
    assert conn.handle_timer(3.99) is None
    assert conn.handle_timer(4.0) == AnswerDue(right)
    assert conn.get_timer() is None
    if right:
        conn.send(p.WelcomeReply("Client01", "filedock"))
        assert conn.next_event() == p.Ping()
    else:
        conn.send(p.ErrorReply(p.ErrorCode.UNAUTHORIZED, "a valid access token is required"))
        assert conn.state is State.CLOSING


def test_the_answer_stays_due_after_the_client_has_gone() -> None:
    conn = named()
    conn.authorize(right=False)
    conn.answer_at(8.0)
    conn.connection_lost()
    assert conn.answer_owed
    assert conn.get_timer() == 8.0  # its place in the pending pool is held until then
    assert conn.handle_timer(8.0) == AnswerDue(False)
    assert not conn.answer_owed


def test_no_answer_can_be_sent_before_it_is_due() -> None:
    conn = named()
    conn.authorize(right=True)
    with pytest.raises(StateError):
        conn.send(p.PongReply())


# -- dropped for a newcomer --------------------------------------------------------


def test_a_dropped_connection_is_told_later_and_reads_nothing_meanwhile() -> None:
    conn = named()
    assert conn.may_be_dropped()
    conn.drop(notice_at=1.0)
    assert not conn.may_be_dropped()
    conn.receive_data(b"HELLO\n")
    assert conn.next_event() is PAUSED
    assert conn.get_timer() == 1.0
    due = conn.handle_timer(1.0)
    assert due == Deadline(
        "notice", b"ERR timeout dropped for a newer connection: no HELLO in time\n"
    )
    assert conn.state is State.CLOSING


def test_a_dropped_connection_never_named_is_told_nothing() -> None:
    conn = connection()
    conn.drop(notice_at=1.0)
    assert conn.handle_timer(1.0) == Deadline("notice", None)


def test_a_greeted_client_may_not_be_dropped() -> None:
    conn = greeted()
    assert not conn.may_be_dropped()
    with pytest.raises(StateError):
        conn.drop(notice_at=1.0)


def test_the_line_reader_peeks_at_the_bytes_as_they_came() -> None:
    reader = p.LineReader(64)
    reader.receive_data(b"\r\n\r\n\x00\r\nQUIT\n!rest")
    assert reader.peek(12) == b"\r\n\r\n\x00\r\nQUIT\n"  # nothing split yet
    assert reader.next_line() == b""  # split now, the CRs kept in what is held
    assert reader.peek(100) == b"\r\n\x00\r\nQUIT\n!rest"
    assert reader.peek(3) == b"\r\n\x00"
