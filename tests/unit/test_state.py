"""The transition table of the server's conversation: every legal step, and
every other one refused."""

from __future__ import annotations

import pytest

from filedock.protocol.state import TRANSITIONS, State, StateError, Step, next_state

LEGAL = [(state, step, to) for state, steps in TRANSITIONS.items() for step, to in steps.items()]
ILLEGAL = [(state, step) for state in State for step in Step if step not in TRANSITIONS[state]]


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State)


@pytest.mark.parametrize(("state", "step", "to"), LEGAL)
def test_a_legal_step_leads_where_the_table_says(state: State, step: Step, to: State) -> None:
    assert next_state(state, step) is to


@pytest.mark.parametrize(("state", "step"), ILLEGAL)
def test_an_illegal_step_raises_naming_the_state_and_step(state: State, step: Step) -> None:
    with pytest.raises(StateError, match=state.name) as raised:
        next_state(state, step)
    assert raised.value.state is state
    assert raised.value.step is step


@pytest.mark.parametrize(
    ("state", "step"),
    [
        (State.IDLE, Step.WELCOME),  # WELCOME twice
        (State.SENDING, Step.ANSWER),  # a line in the middle of a body
        (State.SENDING, Step.CLOSE),  # a last line after a body cut short
        (State.BUSY, Step.START),  # two commands that wait at once
        (State.ACCEPTED, Step.WELCOME),  # WELCOME before NAME
        (State.CLOSING, Step.ANSWER),  # anything after the last reply
        (State.CLOSED, Step.LOST),  # lost twice
        (State.AUTHORIZING, Step.ANSWER),  # an answer before the token's
    ],
)
def test_the_rules_the_conversation_relies_on(state: State, step: Step) -> None:
    with pytest.raises(StateError):
        next_state(state, step)


def test_every_state_can_be_left_when_the_connection_goes() -> None:
    for state in State:
        if state is not State.CLOSED:
            assert next_state(state, Step.LOST) is State.CLOSED
            assert next_state(state, Step.END) in (State.CLOSING, State.CLOSED)
