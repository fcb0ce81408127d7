"""``POST /v1/profiles/{id}/decide`` on a real worker agrees with the decisions the
stream made for the same profile at the same (manual) time, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from streams.core.identity import new_profile_id
from streams.serde import AvroSerde
from tests.integration.core.conftest import CoreStack
from tests.integration.core.harness import AUTH, Worker, as_json, encode_all, produce, wait_for
from tests.integration.core.test_activation import (
    JOURNEY,
    activation,
    commands,
    customer,
    onboarding,
    tick,
)

__all__ = ["activation"]  # the fixture, shared with test_activation.py
NIGHT = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 01:00 in Berlin: quiet hours
EMAIL = {"channel": "email", "action_type": "send_email", "purpose": "marketing",
         "journey_id": JOURNEY}


def decide(worker: Worker, pid: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{worker.base}/v1/profiles/{pid}/decide", json=body,
                        headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return as_json(answer)


def stream_decisions(worker: Worker, pid: str) -> list[tuple[str, str]]:
    items = as_json(worker.get(f"/v1/profiles/{pid}/timeline?limit=50"))["items"]
    return [(i["event_name"].removeprefix("decision."), i["detail"]["rule"]) for i in items
            if i["event_name"].startswith("decision.") and i["detail"]["channel"] == "email"]


def test_the_decision_api_agrees_with_the_stream(
        activation: CoreStack, serde: AvroSerde, workers: Callable[..., Worker]) -> None:
    core = activation
    worker = workers(core.settings)
    tick(core, NIGHT)
    granted, denied = customer("ask-granted"), customer("ask-denied")
    a, b = new_profile_id(f"cid:{granted}"), new_profile_id(f"cid:{denied}")
    end = (NIGHT + timedelta(days=40)).date()  # the journey starts 10 days from now
    produce(core.settings, core.ingest, encode_all(core.encode, [
        *onboarding(granted, "GRANTED", end), *onboarding(denied, "DENIED", end)]))
    wait_for(lambda: worker.get(f"/v1/profiles/{b}").status_code == 200, 60, "B's profile")
    # Asked before the journey decides: A's email would wait for quiet hours to end,
    # B's is withheld for consent.
    asked = decide(worker, a, EMAIL)
    assert (asked["outcome"], asked["rule"], asked["not_before"], asked["allowed"]) == (
        "delayed", "quiet_hours", "2026-06-02T06:00:00+00:00", False)
    assert (decide(worker, b, EMAIL)["outcome"], decide(worker, b, EMAIL)["rule"]) == (
        "withheld", "consent")
    # Eleven nights later time alone brings both in: the stream decides the same.
    tick(core, NIGHT + timedelta(days=11))
    assert len(commands(core, serde, "paid_media", 2)) == 2
    assert wait_for(lambda: stream_decisions(worker, a), 60, "A's") == [
        ("delayed", "quiet_hours")]
    assert wait_for(lambda: stream_decisions(worker, b), 60, "B's") == [("withheld", "consent")]
    # A's held email counts toward the daily cap already: a second one would be capped.
    after = decide(worker, a, EMAIL)
    assert (after["outcome"], after["rule"]) == ("withheld", "frequency_cap")
    # Asking is free: no command, no timeline entry, no cap used up.
    before = stream_decisions(worker, a)
    for _ in range(3):
        decide(worker, a, {**EMAIL, "journey_id": None})
    assert stream_decisions(worker, a) == before
    tick(core, NIGHT + timedelta(days=11, hours=8))
    assert [c[0] for c in commands(core, serde, "email", 1)] == [a]
    assert len(commands(core, serde, "email", 2, deadline_s=3)) == 1
    bad = httpx.post(f"{worker.base}/v1/profiles/{a}/decide", json={"channel": "fax"},
                     headers=AUTH, timeout=10)
    assert bad.status_code == 400 and as_json(bad)["error"]["code"] == "invalid_question"
    unknown = httpx.post(f"{worker.base}/v1/profiles/p-unknown/decide", json=EMAIL,
                         headers=AUTH, timeout=10)
    assert unknown.status_code == 404
