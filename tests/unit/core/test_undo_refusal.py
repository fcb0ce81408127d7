"""Which merges the profile API may ask to undo (streams/core/unmerge.py:undo_refusal):
one recorded on the profile itself, not one carried in by a later merge."""

from __future__ import annotations

from collections.abc import Callable

from streams.core.identity import new_profile_id
from streams.core.pipeline import StageConfig, merge_history
from streams.core.sandbox import Sandbox
from streams.core.unmerge import undo_refusal
from streams.records import Envelope
from tests.unit.core.conftest import T0


def test_a_carried_merge_is_refused_with_what_to_undo_first(
        cfg: StageConfig, event: Callable[..., Envelope]) -> None:
    stages = Sandbox(cfg, partitions=3)
    # The smaller profile id survives a merge: c0's, then c1's, then c2's.
    c0, c1, c2 = sorted((f"c{n}" for n in range(3)), key=lambda c: new_profile_id(f"cid:{c}"))
    for n, customer in enumerate((c0, c1, c2)):
        stages.send(event(f"buy-{customer}", "purchase_completed", n, value="1",
                          customer=customer), T0)
    stages.send(event("l1", at_s=10, customer=c2, anon="y"), T0)
    stages.send(event("l2", at_s=11, customer=c1, anon="y"), T0)  # c2's into c1's
    stages.send(event("l3", at_s=12, customer=c0, anon="y"), T0)  # c1's into c0's
    store, holder = stages.locate(new_profile_id(f"cid:{c0}"))
    history = merge_history(store, holder)
    assert {(m.event_id, m.winner) for m in history} == {
        ("l2", new_profile_id(f"cid:{c1}")), ("l3", holder)}
    assert undo_refusal(history, holder, "l3") is None
    status, code, message = undo_refusal(history, holder, "l2") or (0, "", "")
    assert (status, code) == (409, "merge_carried")
    assert "undo l3 on " + holder in message and new_profile_id(f"cid:{c1}") in message
    assert undo_refusal(history, holder, "nope")[:2] == (404, "merge_not_found")  # type: ignore[index]
