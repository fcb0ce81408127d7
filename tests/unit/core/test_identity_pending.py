"""The partitioned identity stage's open-resource counts
(``activation_identity_protocol_pending``, agents/identity.py)."""

from __future__ import annotations

import pytest

from agents import identity
from agents.identity import pending_counts
from streams.core.store import DictStore


class Slot(DictStore):
    """A slot's store as the gauge reads it: the Store protocol and ``claimed``."""

    def __init__(self, claimed: bool = True, **families: int) -> None:
        super().__init__()
        self.claimed = claimed
        for prefix, count in families.items():
            for n in range(count):
                self[f"{prefix}:{n}".encode()] = b"x"


def test_each_family_is_counted_over_the_claimed_slots() -> None:
    slots = [Slot(l=2, g=3, w=1), Slot(c=1, g=1, i=50, k=50, wq=4),
             Slot(claimed=False, l=9)]  # another worker's slot, or restoring
    assert pending_counts(slots) == {"locks": 2, "home_guards": 4, "claims": 1,
                                     "waiters": 1}  # wq: bounds are not waiters


def test_a_quiet_stage_reads_zero() -> None:
    assert pending_counts([Slot(i=3, k=3, d=10)]) == dict.fromkeys(identity.PENDING, 0)


def test_each_slot_is_scanned_only_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "PENDING_CAP", 5)
    assert pending_counts([Slot(l=8), Slot(l=2)])["locks"] == 7
