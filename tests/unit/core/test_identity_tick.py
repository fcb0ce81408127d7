"""The tick barrier of the identity slots (streams/core/identity_tick.py): a tick goes on
to the profile partitions once, after every event the slots held undecided when it came.

Property (hypothesis): events and ticks fed to the slots, every message delivered in any
interleaving (tests/unit/core/partitioned.py). For each tick, every event whose arrival
a slot had read before the tick's start was read is forwarded to the profile stage
before the tick; each instant goes on at most once, never after a later one; and the
slots hold nothing once every queue is empty. Without the barrier hypothesis finds a
counterexample within a few dozen examples (the tick's messages are delivered eagerly
half the time: the races the barrier is for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.identity_messages import Arrival, ProtocolError, Tick, decode
from streams.core.identity_outputs import Output, TickDone, ToProfile
from streams.core.identity_tick import LAST, instant_us
from tests.unit.core.partitioned import AT_REST_EMPTY, Partitioned, dump, ref_of
from tests.unit.core.test_identity_property import EVENTS, NOW, SCHEDULE, Items, build, chooser

TICKER = -3  # the sender of tick records (the leader's ticker)


def body(seconds: int) -> str:
    return json.dumps({"now": (NOW + timedelta(seconds=seconds)).isoformat()})


@dataclass
class Ticking(Partitioned):
    """The harness, noting which arrivals were read before each tick started."""

    arrived: set[str] = field(default_factory=set)
    before: dict[str, set[str]] = field(default_factory=dict)  # tick body -> event ids

    def tick(self, at: int, landing: int) -> None:
        self._queue(TICKER, landing % self.slots, Tick("start", body(at)))

    def deliver(self, pair: tuple[int, int]) -> list[Output]:
        message = decode(self.queues[pair][0])
        if isinstance(message, Arrival):
            self.arrived.add(message.event.event_id)
        elif isinstance(message, Tick) and message.phase == "start":
            self.before[message.body] = set(self.arrived)
        return super().deliver(pair)


def run_ticks_eagerly(part: Ticking, schedule: list[int]) -> None:
    """Delivers until every queue is empty: an even schedule entry takes a queue whose
    head is a tick message if there is one (the races the barrier is for), an odd one
    any queue; past the schedule, the first queue."""
    pick = chooser(schedule)
    for choice in schedule:
        if not (ready := part.ready()):
            return
        ticks = [p for p in ready if isinstance(decode(part.queues[p][0]), Tick)]
        pool = ticks if ticks and choice % 2 == 0 else ready
        part.deliver(pool[(choice // 2) % len(pool)])
    part.run(pick)


def forwarded_before(part: Ticking) -> dict[str, tuple[int, set[str]]]:
    """Per tick sent on: its place among the profile-bound outputs, and the events
    forwarded before it."""
    seen: set[str] = set()
    out: dict[str, tuple[int, set[str]]] = {}
    for n, (_, item) in enumerate(part.to_profiles):
        if isinstance(item, ToProfile):
            seen.add(item.event.event_id)
        elif isinstance(item, TickDone):
            assert item.body.decode() not in out, "an instant went on twice"
            out[item.body.decode()] = (n, set(seen))
    return out


@settings(max_examples=200, deadline=None)
@given(items=EVENTS, slots=st.integers(1, 4), schedule=SCHEDULE,
       ticks=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 7)), max_size=4))
def test_a_tick_follows_every_event_read_before_it(
        items: Items, slots: int, schedule: list[int], ticks: list[tuple[int, int]]) -> None:
    part = Ticking(slots)
    sent = build(items)
    at = {position: landing for position, landing in ticks}
    for n, s in enumerate(sent):
        if n in at:
            part.tick(n, at[n])
        part.arrive(ref_of(s.envelope, s.origin), NOW)
    run_ticks_eagerly(part, schedule)
    done = forwarded_before(part)
    decided = {s.envelope.event_id for s in sent}  # the harness gives nothing up here
    assert part.gave_up == []
    for tick_body, (_, forwarded) in done.items():
        assert part.before[tick_body] & decided <= forwarded, tick_body
    instants = [instant_us(b) for b, _ in sorted(done.items(), key=lambda kv: kv[1][0])]
    assert instants == sorted(instants), "a tick went on after a later one"
    assert {instant_us(b) for b in part.before} >= set(instants)
    for store in part.stores:
        assert not [k for k in store if k.startswith(AT_REST_EMPTY)], dump(store)
        assert not [k for k in store if k.startswith(b"tk:i")], dump(store)


def test_with_nothing_undecided_a_tick_goes_on_once_at_once() -> None:
    part = Ticking(4)
    part.tick(0, 2)
    part.run()
    assert [item for _, item in part.to_profiles] == [TickDone(body(0).encode())]
    assert part.stores[0][LAST] == str(instant_us(body(0))).encode()


def test_an_instant_after_a_later_one_is_dropped() -> None:
    part = Ticking(3)
    part.tick(10, 0)
    part.run()
    part.tick(5, 1)
    part.tick(10, 2)  # the same instant again
    part.run()
    assert [item for _, item in part.to_profiles] == [TickDone(body(10).encode())]


@pytest.mark.parametrize("raw", ['{"now": "yesterday"}', '{"at": 1}', "not json",
                                 '{"now": "2026-03-02T00:00:00"}'])
def test_a_malformed_tick_is_refused_before_any_slot_holds_it(raw: str) -> None:
    part = Ticking(2)
    part._queue(TICKER, 0, Tick("start", raw))
    with pytest.raises(ProtocolError):
        part.run()
