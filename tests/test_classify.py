"""The classifier table itself: complete, closed, and total over any event sequence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pcapdiag.classify import OUTCOMES, TRANSITIONS, Ev, Event, Machine, Outcome, Side, State


def test_every_state_ends_at_end_of_capture() -> None:
    for state in State:
        target = TRANSITIONS.get((state, Side.NONE, Ev.EOC))
        assert isinstance(target, Outcome), state


def test_outcomes_come_from_the_vocabulary_and_all_are_reachable() -> None:
    used = {str(t) for t in TRANSITIONS.values() if isinstance(t, Outcome)}
    assert used <= set(OUTCOMES)
    assert used == set(OUTCOMES)


def test_every_state_is_reachable() -> None:
    reached = {State.CONNECTING, State.IDLE}  # initial states (SYN seen / mid-stream)
    changed = True
    while changed:
        changed = False
        for (state, _side, _ev), target in TRANSITIONS.items():
            if state in reached and isinstance(target, State) and target not in reached:
                reached.add(target)
                changed = True
    assert reached == set(State)


_events = st.lists(
    st.tuples(st.sampled_from(list(Side)), st.sampled_from([e for e in Ev if e is not Ev.EOC])),
    max_size=30,
)


@given(_events, st.sampled_from([State.CONNECTING, State.IDLE]))
def test_any_event_sequence_gives_exactly_one_outcome(events, start) -> None:
    m = Machine(state=start)
    for i, (side, kind) in enumerate(events):
        m.feed(Event(side, kind, i, i + 1))
    decided = m.outcome
    m.feed(Event(Side.NONE, Ev.EOC, 10**9, None))
    assert m.outcome in OUTCOMES
    if decided is not None:
        assert m.outcome == decided  # final means final


def test_keepalive_race_keeps_the_server_fin_as_the_close() -> None:
    m = Machine(state=State.IDLE)
    m.feed(Event(Side.NONE, Ev.IDLE_GAP, 1, None))
    fin = Event(Side.SERVER, Ev.FIN, 2, 10)
    m.feed(fin)
    m.feed(Event(Side.CLIENT, Ev.REQUEST, 3, 12))
    assert m.outcome == "server_close_after_request"
    assert m.decisive is fin
