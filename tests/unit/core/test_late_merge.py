"""A merge that reaches its winner after a later merge took the winner away
(streams/core/late_merge.py): recorded as with one partition, and undone as with one.

A chain (c2's profile into c1's, then c1's into c0's) sent without waiting for the
profile partitions, worked off in many orders: in some the second merge is carried out
first, so the first one's merge-in finds its winner gone."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from streams.core import late_merge
from streams.core.identity import new_profile_id
from streams.core.pipeline import StageConfig, merge_history
from streams.core.sandbox import Sandbox
from streams.records import Envelope
from tests.unit.core.conftest import T0


def chain(stages: Sandbox, event: Callable[..., Envelope], customers: list[str],
          wait: bool = False) -> None:
    """The links, each merge carried out before the next (``wait``) or not."""
    for n, customer in enumerate(customers):
        stages.send(event(f"buy-{customer}", "purchase_completed", n, value="1",
                          customer=customer), T0)
    stages.send(event("l1", at_s=10, customer=customers[2], anon="y"), T0)
    stages.send(event("l2", at_s=11, customer=customers[1], anon="y"), T0, drain=wait)
    stages.send(event("l3", at_s=12, customer=customers[0], anon="y"), T0, drain=wait)
    stages.drain()


def seen(stages: Sandbox, customers: list[str]) -> list[Any]:
    out = []
    for customer in customers:
        store, pid = stages.locate(new_profile_id(f"cid:{customer}"))
        profile = stages.profile(pid)
        assert profile is not None
        out.append((pid, profile.order_count, sorted(profile.identifiers.get("anonymous_id", [])),
                    sorted((m.event_id, m.winner, m.loser) for m in merge_history(store, pid))))
    return out


def test_late_merges_record_and_undo_as_one_partition(
        cfg: StageConfig, event: Callable[..., Envelope], monkeypatch: pytest.MonkeyPatch) -> None:
    late = []
    original = late_merge.keep
    monkeypatch.setattr("streams.core.late_merge.keep",
                        lambda *a: late.append(a[2].merge.event_id) or original(*a))
    customers = sorted((f"c{n}" for n in range(3)), key=lambda c: new_profile_id(f"cid:{c}"))
    reference = Sandbox(cfg, partitions=1)
    chain(reference, event, customers, wait=True)
    survivor = new_profile_id(f"cid:{customers[0]}")
    expected = seen(reference, customers)
    reference.undo(survivor, "l3")  # c1's profile (with c2's) leaves c0's again
    undone = seen(reference, customers)
    for seed in range(40):  # one partition as well: its queue can hold both merges too
        stages = Sandbox(cfg, partitions=1 + seed % 3, pick=random.Random(seed).choice)
        chain(stages, event, customers)
        assert seen(stages, customers) == expected, seed
        stages.undo(survivor, "l3")
        assert seen(stages, customers) == undone, seed
    assert "l2" in late, "no order made the first merge late"
