"""The pure view models: search, timeline explanations, counts, funnels, live rows,
definition diffs."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from console.definitions import History, diff_lines, rollout_state, rows
from console.funnel import funnels, parse
from console.live import RateGate, event_item
from console.render import ago, duration, sparkline, when
from console.search import BadQuery, parse_query
from console.stats import Stats, hours
from console.timeline import explain_decision, row
from streams.activation.definitions import load_definitions
from streams.activation.distribution import Published, encode_record
from streams.activation.rollout import Rollout
from streams.errors import DecodeError
from streams.records import sha256_hex
from streams.settings import REPO_ROOT
from tests.unit.console.fakes import METRICS, NOW, TIMELINE


def test_search_hashes_what_the_operator_types() -> None:
    q = parse_query("auto", "  Ada@Example.com ")
    assert q.params == {"email_sha256": sha256_hex("ada@example.com")}
    assert parse_query("auto", "+49 151 2345 6789").params == {
        "phone_sha256": sha256_hex("+4915123456789")}
    assert parse_query("auto", "cust_12345").params == {"customer_id": "cust_12345"}
    assert parse_query("auto", "p-0123456789abcdef0123").profile_id == "p-0123456789abcdef0123"
    assert parse_query("email_sha256", "A" * 64).params == {"email_sha256": "a" * 64}
    for kind, value in (("auto", " "), ("phone", "12345"), ("email", "nope"),
                        ("email_sha256", "xyz"), ("bogus", "x")):
        with pytest.raises(BadQuery):
            parse_query(kind, value)


def test_every_decision_is_explained_with_its_rule() -> None:
    withheld = row(TIMELINE[0])
    assert withheld.kind == "decision" and withheld.outcome == "withheld"
    assert withheld.rule == "consent" and withheld.tone == "bad"
    assert withheld.explanation == ("email withheld by rule consent: no marketing:email "
                                    "consent (journey churn_prevention, step reminder_email; "
                                    "definitions abc)")
    assert explain_decision("sent", {"channel": "email", "rule": "allowed"}) == \
        "email sent: every rule allowed it"
    delayed = explain_decision("delayed", {"channel": "email", "rule": "quiet_hours",
                                           "reason": "22:00-07:00",
                                           "not_before": "2026-06-02T07:00:00+02:00"})
    assert delayed.startswith("email delayed (held until it may leave) by rule quiet_hours")
    assert "not before 2026-06-02T07:00:00+02:00" in delayed
    assert explain_decision("cancelled", {"channel": "email", "rule": "journey_exit"}) == \
        "email cancelled by rule journey_exit"
    assert row(TIMELINE[1]).kind == "event" and row(TIMELINE[1]).tone == "plain"


def test_audience_sizes_over_time_count_each_change_once() -> None:
    stats = Stats()
    t0 = NOW - timedelta(hours=2)
    for i, (change, at) in enumerate([("entered", t0), ("entered", t0), ("exited", NOW)]):
        record = {"change_id": f"c{i}", "audience_id": "a", "change": change,
                  "changed_at": at}
        stats.change(record)
        stats.change(record)  # the same change again (a replay): counted once
    tally = stats.snapshot().audiences["a"]
    assert tally.size() == 1 and tally.since == t0
    assert tally.size_points(hours(NOW, 4)) == [0, 2, 2, 1]


def test_delivery_and_journey_counts() -> None:
    stats = Stats()
    for i, status in enumerate(["retrying", "delivered", "failed"]):
        stats.outcome({"outcome_id": f"o{i}", "destination": "crm", "status": status,
                       "occurred_at": NOW, "http_status": 503 if status != "delivered"
                       else 200, "error": None})
    stats.command({"action_id": "a1", "journey_id": "j", "step_id": "s", "created_at": NOW})
    stats.command({"action_id": "a1", "journey_id": "j", "step_id": "s", "created_at": NOW})
    stats.command({"action_id": "a2", "journey_id": None, "created_at": NOW})
    snap = stats.snapshot()
    crm = snap.destinations["crm"]
    assert [crm.count(s) for s in ("delivered", "retrying", "failed")] == [1, 1, 1]
    assert crm.last_failure == "failed: HTTP 503"
    assert snap.steps[("j", "s")].total() == 1 and len(snap.steps) == 1


def test_funnel_from_the_workers_metrics() -> None:
    counters = parse([("http://w1", METRICS), ("http://w2", METRICS), ("http://w3", None)])
    assert counters.workers_read == 2 and counters.workers_missing == ["http://w3"]
    defs = load_definitions(REPO_ROOT / "definitions")
    churn = next(f for f in funnels(counters, defs) if f.journey_id == "churn_prevention")
    assert churn.entered == 8
    first = churn.steps[0]
    assert first.step_id == "reminder_email" and first.outcomes["sent"] == 6
    assert first.outcomes["withheld"] == 2 and counters.withheld_by_rule["consent"] == 2


def _avro_message(record: dict[str, Any], **fields: Any) -> Message:
    return Message(topic="events.ingest", partition=1, offset=7, key=b"cid:c1",
                   value=b"rec", headers=[("x-activation-redrive-count", b"1")],
                   timestamp=(1, int(NOW.timestamp() * 1000)), **fields)


def _envelope(event_time: datetime) -> dict[str, Any]:
    return {"event_id": "e1", "event_name": "purchase_completed", "event_time": event_time,
            "received_time": NOW, "source": "billing", "properties": {}, "payload": None,
            "identifiers": {"customer_id": "c1", "email_sha256": "ab" * 32,
                            "phone_sha256": None, "anonymous_id": None}}


def test_live_rows_are_screened_like_the_workers_do() -> None:
    good = event_item(_avro_message({}), lambda _: (1, _envelope(NOW)), NOW)
    assert good.valid and good.redrive_count == 1 and good.at == NOW
    assert good.identifiers == [("customer_id", "c1"), ("email_sha256", "ab" * 32)]
    assert good.lookup == {"customer_id": "c1"}
    future = event_item(_avro_message({}), lambda _: (1, _envelope(NOW + timedelta(hours=1))),
                        NOW)
    assert not future.valid and future.reason_code == "contract_violation"
    assert "in the future" in future.reason and future.event_id == "e1"

    def broken(_: bytes | None) -> tuple[int, dict[str, Any]]:
        raise DecodeError("unknown schema id 99")

    bad = event_item(_avro_message({}), broken, NOW)
    assert not bad.valid and bad.reason_code == "decode_error" and bad.identifiers == []
    assert bad.problem and not good.problem


def test_rate_gate() -> None:
    clock = [0.0]
    gate = RateGate(2, lambda: clock[0])
    assert [gate.allow() for _ in range(3)] == [True, True, False]
    clock[0] += 1.0
    assert gate.allow() and gate.passed == 3 and gate.skipped == 1


def test_render_helpers() -> None:
    assert when(NOW) == "2026-06-01 12:00:00Z" and when(None) == "-"
    assert when("2026-06-01T14:00:00+02:00") == "2026-06-01 12:00:00Z"
    assert ago(NOW - timedelta(minutes=5), NOW) == "5m ago" and ago(None) == "never"
    assert sparkline([0, 1]) == "0.0,27.0 160.0,1.0" and sparkline([]) == ""
    assert duration(timedelta(days=7)) == "7 days" and duration(timedelta(hours=1)) == "1 hour"
    assert duration(timedelta(seconds=90)) == "90 seconds"


def _published(seq: int, directory: Path, rollout: Rollout | None = None
               ) -> tuple[bytes, bytes]:
    defs = load_definitions(directory)
    p = Published(seq, defs.version, f"author{seq}", NOW + timedelta(minutes=seq), defs,
                  f"r{seq}", rollout)
    return encode_record(p)


def test_definitions_history_rollout_and_diff(tmp_path: Path) -> None:
    history = History()
    assert rollout_state(history) == "No definitions are published yet."
    history.apply(*_published(1, REPO_ROOT / "definitions"))
    history.apply(b"v00000009-x", b"{not json")  # unreadable: skipped, never in force
    assert rollout_state(history).endswith("is in force for every profile.")
    changed = tmp_path / "defs"
    shutil.copytree(REPO_ROOT / "definitions", changed)
    (changed / "audiences" / "lapsed_buyers.yaml").unlink()
    history.apply(*_published(2, changed, Rollout(1, percent=10)))
    assert "staged for 10% of profiles; sequence 1 for the others" in rollout_state(history)
    versions = rows(history)
    assert [(r.sequence, r.in_force, r.stable) for r in versions] == [
        (2, True, False), (1, False, True)]
    old, new = history.by_sequence(1), history.by_sequence(2)
    assert old is not None and new is not None
    lines = diff_lines(old, new)
    assert ("- audiences/lapsed_buyers", "remove") in [(x.text, x.tone) for x in lines]
    assert lines[0].tone == "head"
