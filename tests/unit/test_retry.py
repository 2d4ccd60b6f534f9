"""The --wait schedule: what is waited out, the pauses, the deadline; on a fake clock."""

from __future__ import annotations

import pytest

from filedock.client.retry import FIRST_PAUSE, LONGEST_PAUSE, connect_retrying, worth_waiting
from filedock.errors import ConnectionLost, FiledockError, ServerFull, TimedOut, Unauthorized


def refused() -> ConnectionLost:
    """A ConnectionLost as the socket layer makes it of a refused connection."""
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            raise ConnectionLost("cannot connect to 127.0.0.1:1: Connection refused") from None
    except ConnectionLost as exc:
        return exc


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class Failing:
    """A connect that fails with ``error`` ``times`` times, then returns "connected"."""

    def __init__(self, error: FiledockError, times: int = 1_000_000) -> None:
        self.error = error
        self.left = times
        self.tries = 0

    def __call__(self) -> str:
        self.tries += 1
        if self.left > 0:
            self.left -= 1
            raise self.error
        return "connected"


def test_what_is_worth_waiting_for() -> None:
    assert worth_waiting(ServerFull("server is at capacity (3/3 clients)"))
    assert worth_waiting(refused())
    assert not worth_waiting(ConnectionLost("connection to the server was lost: reset"))
    assert not worth_waiting(TimedOut("no answer from 10.0.0.1:50000 within 10 s"))
    assert not worth_waiting(Unauthorized("a valid token is required"))


def test_the_pause_doubles_up_to_its_longest_and_stops_at_the_deadline() -> None:
    clock = FakeClock()
    connect = Failing(ServerFull("full"))
    told: list[float] = []
    with pytest.raises(ServerFull):
        connect_retrying(
            connect,
            3.0,
            waiting=lambda exc, pause: told.append(pause),
            clock=clock,
            sleep=clock.sleep,
        )
    assert (FIRST_PAUSE, LONGEST_PAUSE) == (0.1, 1.0)
    assert clock.pauses == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 0.5])  # the last one: to 3 s
    assert told == clock.pauses
    assert clock.now == pytest.approx(1003.0)
    assert connect.tries == len(clock.pauses) + 1  # the last try at the deadline


def test_a_slot_that_frees_is_taken() -> None:
    clock = FakeClock()
    connect = Failing(refused(), times=2)
    assert connect_retrying(connect, 30.0, clock=clock, sleep=clock.sleep) == "connected"
    assert clock.pauses == pytest.approx([0.1, 0.2])


def test_other_failures_are_not_waited_out() -> None:
    clock = FakeClock()
    connect = Failing(TimedOut("no answer"))
    with pytest.raises(TimedOut):
        connect_retrying(connect, 30.0, clock=clock, sleep=clock.sleep)
    assert (connect.tries, clock.pauses) == (1, [])
