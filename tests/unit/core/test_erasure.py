"""Erasure over the stages' stores (streams/core/erasure.py): everything of the customer
goes, merged-away profiles too, and a suppressed identifier creates nothing again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from streams.core.erasure import (
    Request,
    erase_identity,
    erase_profile,
    erasure_commands,
    is_suppressed,
)
from streams.core.identity import new_profile_id
from streams.core.identity_stage import SUPPRESSED_EVENT, route_event
from streams.core.pipeline import StageConfig, load_profile
from streams.core.sandbox import DictStore
from streams.core.sandbox import Sandbox as Stages
from streams.records import Envelope
from tests.unit.core.conftest import T0

NOW = datetime(2026, 3, 2, tzinfo=UTC)


def request(identifier: str, mode: str = "suppress_with_delete") -> Request:
    return Request("req-1", identifier, mode, "dpo", NOW)  # type: ignore[arg-type]


def merged_customer(cfg: StageConfig, event: Callable[..., Envelope]) -> tuple[Stages, str, str]:
    """Two profiles (c1 with an email, c2) merged by a shared device; returns the stages,
    the winner and the loser."""
    stages = Stages(cfg)
    stages.send(event("e1", customer="c1", email="aa" * 32), T0)
    stages.send(event("e2", customer=None, anon="dev-1", email="aa" * 32), T0)
    stages.send(event("e3", customer="c2"), T0)
    stages.send(event("e4", customer="c2", anon="dev-1"), T0)  # links both
    stages.drain()
    winner, loser = sorted([new_profile_id("cid:c1"), new_profile_id("cid:c2")])
    return stages, winner, loser


def test_erasing_removes_every_key_and_suppresses(
        cfg: StageConfig, event: Callable[..., Envelope]) -> None:
    stages, winner, loser = merged_customer(cfg, event)
    ident = stages.identity
    done = erase_identity(ident, ident.scan, request("em:" + "aa" * 32), NOW)
    assert done.profile_id == winner
    assert not [k for k in ident if k.startswith((b"i:", b"k:", b"r:"))]
    assert set(done.suppressed) == {"cid:c1", "cid:c2", "anon:dev-1", "em:" + "aa" * 32}
    assert all(is_suppressed(ident, k) for k in done.suppressed)
    audit = done.audit
    assert (audit["found"], audit["profiles_erased"], audit["identifiers_erased"]) == (
        True, 2, 4)
    assert "aa" * 32 not in str(audit) and "c1" not in str(audit)  # no personal data
    for store in stages.parts:
        for pid in (winner, loser):
            if load_profile(store, pid) is not None:
                losers = erase_profile(store, store.scan, pid)
                assert losers in ([], [loser])
    leftover = [k for s in stages.parts for k in s
                if winner.encode() in k or loser.encode() in k]
    assert leftover == []


def test_a_suppressed_identifier_creates_nothing_again(
        cfg: StageConfig, event: Callable[..., Envelope]) -> None:
    stages, _, _ = merged_customer(cfg, event)
    erase_identity(stages.identity, stages.identity.scan, request("cid:c1"), NOW)
    routed = route_event(stages.identity, event("e9", customer="c1"), NOW, cfg.dedup_window)
    assert routed.status == SUPPRESSED_EVENT
    other = route_event(stages.identity, event("e10", customer="c3"), NOW, cfg.dedup_window)
    assert other.status == "applied"


def test_delete_mode_does_not_suppress(cfg: StageConfig,
                                       event: Callable[..., Envelope]) -> None:
    stages, winner, _ = merged_customer(cfg, event)
    done = erase_identity(stages.identity, stages.identity.scan,
                          request("cid:c2", "delete"), NOW)
    assert done.profile_id == winner and done.suppressed == ()
    again = route_event(stages.identity, event("e9", customer="c1"), NOW, cfg.dedup_window)
    assert again.status == "applied"


def test_an_unknown_identifier_is_audited_as_not_found() -> None:
    done = erase_identity(DictStore(), DictStore().scan, request("cid:nobody"), NOW)
    assert done.profile_id is None and done.audit["found"] is False
    assert done.suppressed == ("cid:nobody",)


def test_erasure_commands_go_to_every_channel() -> None:
    cmds = erasure_commands("p-1", "req-1", {"customer_id": "c1"}, ["email", "crm"], NOW)
    assert [(c["channel"], c["action_type"]) for c in cmds] == [
        ("email", "erase_profile"), ("crm", "erase_profile")]
    assert len({c["action_id"] for c in cmds}) == 2
