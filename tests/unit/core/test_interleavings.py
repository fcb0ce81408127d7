"""Property: the profile stage spread over any number of partitions, its queues worked
off in any interleaving the workers could produce, ends with the same profiles and
merge histories as one partition (hypothesis). Merges cross partitions in two steps
(merge-out on the loser's, merge-in on the winner's), so this is the protocol's test.

When the identity stage runs ahead of the profile partitions, a merge-in can reach a
winner that a later merge took away (streams/core/late_merge.py): the properties also
hold then, and after undoing merges. The same property over identity slots is
tests/unit/core/test_identity_property.py."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.pipeline import StageConfig, merge_history
from streams.core.profile import to_api
from streams.core.sandbox import Sandbox
from streams.records import Envelope, Identifiers

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = StageConfig(timedelta(days=7), timedelta(seconds=5), 50)
NOW = datetime(2026, 3, 2, tzinfo=UTC)


def events(rng: random.Random, n: int) -> list[Envelope]:
    """Customers seen on shared devices now and then: merges, and chains of them."""
    out = []
    for i in range(n):
        customer, device = f"c{rng.randrange(8)}", f"d{rng.randrange(5)}"
        ids = Identifiers(customer_id=customer if rng.random() < 0.7 else None,
                          anonymous_id=device if rng.random() < 0.5 else None)
        if ids.is_empty():
            ids = Identifiers(customer_id=customer)
        when = T0 + timedelta(seconds=i - (rng.randint(1, 30) if rng.random() < 0.1 else 0))
        out.append(Envelope(event_id=f"e{i}", event_name="identify", event_time=when,
                            received_time=when, source="test", identifiers=ids,
                            properties={"n": i % 3}))
    return out


def outcome(sandbox: Sandbox, evs: list[Envelope]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for customer in sorted({e.identifiers.customer_id for e in evs} - {None}):
        store, pid = sandbox.locate(
            sandbox.identity[f"i:cid:{customer}".encode()].decode())
        profile = sandbox.profile(pid)
        assert profile is not None
        view = to_api(profile)
        found[customer] = (pid, view["identifiers"], view["traits"],
                           sorted(e["event_id"] for e in profile.timeline),
                           sorted((m.winner, m.loser, m.event_id)
                                  for m in merge_history(store, pid)))
    return found


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), partitions=st.integers(2, 5),
       order=st.randoms(use_true_random=False))
def test_any_partitioning_and_interleaving_gives_the_one_partition_answer(
        seed: int, partitions: int, order: random.Random) -> None:
    evs = events(random.Random(seed), 60)
    reference = Sandbox(CFG, partitions=1)
    spread = Sandbox(CFG, partitions=partitions, pick=order.choice)
    for envelope in evs:
        reference.send(envelope, NOW)
        spread.send(envelope, NOW)
    assert outcome(spread, evs) == outcome(reference, evs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), partitions=st.integers(2, 5),
       batch=st.integers(2, 8), order=st.randoms(use_true_random=False))
def test_queues_filled_ahead_and_worked_off_in_any_order_agree(
        seed: int, partitions: int, batch: int, order: random.Random) -> None:
    """The identity stage runs ahead by up to ``batch`` events before the profile
    partitions catch up, in any order among them."""
    evs, reference, spread = run_ahead(seed, partitions, batch, order)
    assert outcome(spread, evs) == outcome(reference, evs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), partitions=st.integers(2, 5),
       batch=st.integers(2, 8), order=st.randoms(use_true_random=False))
def test_undoing_a_merge_after_any_interleaving_gives_the_one_partition_answer(
        seed: int, partitions: int, batch: int, order: random.Random) -> None:
    """As above, then each surviving profile's newest merge undone in both: the
    restored profiles carry what their merges brought, whichever order the profile
    partitions carried the merges out in (streams/core/late_merge.py)."""
    evs, reference, spread = run_ahead(seed, partitions, batch, order)
    for pid, event_id in newest_merges(reference, evs):
        reference.undo(pid, event_id)
        spread.undo(pid, event_id)
    assert outcome(spread, evs) == outcome(reference, evs)


def run_ahead(seed: int, partitions: int, batch: int, order: random.Random
              ) -> tuple[list[Envelope], Sandbox, Sandbox]:
    """The events, one partition working each off before the next, and ``partitions``
    worked off every ``batch`` events in ``order``."""
    evs = events(random.Random(seed), 60)
    reference = Sandbox(CFG, partitions=1)
    spread = Sandbox(CFG, partitions=partitions, pick=order.choice)
    for i, envelope in enumerate(evs):
        reference.send(envelope, NOW)
        spread.send(envelope, NOW, drain=(i % batch == batch - 1))
    spread.drain()
    return evs, reference, spread


def newest_merges(sandbox: Sandbox, evs: list[Envelope]) -> list[tuple[str, str]]:
    """Each surviving profile's newest merge recorded on itself (by event number)."""
    found = {}
    for customer in sorted({e.identifiers.customer_id for e in evs} - {None}):
        store, pid = sandbox.locate(sandbox.identity[f"i:cid:{customer}".encode()].decode())
        own = [m.event_id for m in merge_history(store, pid) if m.winner == pid]
        if own:
            found[pid] = max(own, key=lambda e: int(e.removeprefix("e")))
    return sorted(found.items())
