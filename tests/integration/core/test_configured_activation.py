"""Issue 16 on the real broker and registry, through a real worker: a channel added by
definitions alone, data actions, experiments, and the guide's dunning and win-back
journeys (definitions/). Time is the worker's manual clock, and every event is stamped
on that clock, so event-history conditions ("2 failed payments in 7 days") read it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.activation.distribution import publish
from streams.activation.governance import in_holdout
from streams.core.identity import new_profile_id
from streams.records import Envelope, Identifiers
from streams.schema_workflow import SchemaWorkflow, plans_for
from streams.serde import AvroSerde
from streams.settings import REPO_ROOT, Settings
from streams.topics import (
    AUDIENCE_CHANGE_RECORD,
    AUDIENCE_CHANGES,
    action_topic,
    action_topic_specs,
)
from tests.integration.core.conftest import CoreStack
from tests.integration.core.harness import Worker, as_json, encode_all, produce, wait_for
from tests.integration.core.test_activation import distinct, tick

CLOCK = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 14:00 in Berlin: no quiet hours
DAY = timedelta(days=1)
VOICE = """
description: Calls placed by the call centre dialer, added by this file alone.
purpose: service
action_types:
  place_call: {requires: [script_id]}
"""
CALLBACK = """
trigger: {event: callback_requested}
holdout_percent: 0
steps:
  - id: ring
    send: {channel: voice, action_type: place_call, payload: {script_id: callback}}
"""


def manual(core: CoreStack, serde: AvroSerde, definitions: Path) -> CoreStack:
    """The core stack on the manual clock with ``definitions`` published (which creates
    the channels' topics and registers their subjects)."""
    settings = core.settings.model_copy(update={"activation_clock": "manual"})
    serde.encoder(f"{settings.topic(AUDIENCE_CHANGES)}-value", AUDIENCE_CHANGE_RECORD,
                  register=True)
    publish(settings, definitions, "integration-test")
    return CoreStack(settings, core.ingest, core.dead_letter, core.encode)


@pytest.fixture
def repository(core: CoreStack, serde: AvroSerde) -> CoreStack:
    return manual(core, serde, REPO_ROOT / "definitions")


def on_clock(name: str, cust: str, when: datetime, payload: dict[str, Any] | None = None,
             **props: Any) -> Envelope:
    return Envelope(event_id=f"{cust}-{name}-{when:%Y%m%dT%H%M}", event_name=name,
                    event_time=when, received_time=datetime.now(UTC), source="billing",
                    identifiers=Identifiers(customer_id=cust), properties=props,
                    payload=payload)


def consents(cust: str, when: datetime, *kinds: str) -> list[Envelope]:
    return [on_clock("consent_updated", cust, when - timedelta(minutes=i + 1),
                     {"consent_type": kind, "status": "GRANTED"})
            for i, kind in enumerate(kinds)]


def send(core: CoreStack, events: list[Envelope]) -> None:
    produce(core.settings, core.ingest, encode_all(core.encode, events))


def commands(core: CoreStack, serde: AvroSerde, channel: str, n: int,
             deadline_s: float = 60) -> list[dict[str, Any]]:
    return distinct(core, serde, core.settings.topic(action_topic(channel)), n, "action_id",
                    deadline_s)


def changes(core: CoreStack, serde: AvroSerde, n: int) -> list[dict[str, Any]]:
    return distinct(core, serde, core.settings.topic(AUDIENCE_CHANGES), n, "change_id")


def first_raw(settings: Settings, topic: str, deadline_s: float = 60) -> bytes:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"raw-{time.time()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value():
                return bytes(msg.value())
    finally:
        consumer.close()
    raise AssertionError(f"nothing committed on {topic} within {deadline_s}s")


def timeline(worker: Worker, pid: str, name: str) -> list[dict[str, Any]]:
    return wait_for(lambda: [i for i in as_json(
        worker.get(f"/v1/profiles/{pid}/timeline?limit=100"))["items"]
        if i["event_name"] == name], 60, f"{name} on {pid}'s timeline")


def test_a_channel_added_by_definitions_alone_reaches_its_topic_in_its_schema(
        core: CoreStack, serde: AvroSerde, workers: Callable[..., Worker],
        tmp_path: Path) -> None:
    root = tmp_path / "definitions"
    shutil.copytree(REPO_ROOT / "definitions", root)
    (root / "channels" / "voice.yaml").write_text(VOICE, encoding="utf-8")
    (root / "journeys" / "callback.yaml").write_text(CALLBACK, encoding="utf-8")
    stack = manual(core, serde, root)
    settings = stack.settings
    # Publishing made the topic and registered its subject, through the schema workflow.
    flow = SchemaWorkflow(settings)
    [plan] = plans_for(action_topic_specs(settings, ["actions.voice"]), flow.catalog)
    assert flow.check(plan).status == "unchanged"
    assert flow.registry.raw.get_compatibility(plan.subject) == "FULL_TRANSITIVE"
    workers(settings)
    tick(stack, CLOCK)
    send(stack, [*consents("caller", CLOCK, "service:voice"),
                 on_clock("callback_requested", "caller", CLOCK)])
    [command] = commands(stack, serde, "voice", 1)
    assert (command["channel"], command["action_type"], command["payload"]) == (
        "voice", "place_call", {"script_id": "callback"})
    assert command["profile_id"] == new_profile_id("cid:caller")
    raw = first_raw(settings, settings.topic("actions.voice"))
    assert serde.decode(raw)[0] == flow.registry.schema_id(plan.subject, plan.schema_text,
                                                           register=False)


def test_dunning_marks_at_risk_in_the_same_record_and_clears_it_on_payment(
        repository: CoreStack, serde: AvroSerde, workers: Callable[..., Worker]) -> None:
    core = repository
    worker = workers(core.settings)
    tick(core, CLOCK)
    pid = new_profile_id("cid:late-payer")
    send(core, [on_clock("identify", "late-payer", CLOCK - DAY, timezone="Europe/Berlin"),
                *consents("late-payer", CLOCK, "service:email", "service:sms", "service:crm"),
                on_clock("payment_failed", "late-payer", CLOCK)])
    [email] = commands(core, serde, "email", 1)
    assert (email["journey_id"], email["payload"]["template_id"]) == (
        "dunning", "dunning_update_card")
    send(core, [on_clock("payment_failed", "late-payer", CLOCK + 2 * DAY)])  # the retry
    # Ticks and events travel apart: the tick waits until the retry is on the profile.
    wait_for(lambda: len(timeline(worker, pid, "payment_failed")) == 2, 60, "the retry")
    tick(core, CLOCK + 3 * DAY)  # grace over: the second failure in a week escalates
    [sms] = commands(core, serde, "sms", 1)
    assert (sms["action_type"], sms["payload"]["template_id"]) == ("send_sms",
                                                                   "dunning_payment_failed")
    assert [c["payload"]["task"] for c in commands(core, serde, "crm", 1)] == [
        "call_failed_payment"]
    [entered] = changes(core, serde, 1)
    [written] = timeline(worker, pid, "trait_set")
    assert (entered["audience_id"], entered["change"]) == ("at_risk", "entered")
    assert entered["caused_by"] == written["event_id"]  # the data action moved it
    assert written["detail"]["step_id"] == "mark_at_risk"
    profile = as_json(worker.get(f"/v1/profiles/{pid}"))
    assert profile["traits"]["lifecycle_stage"] == "at_risk"
    paid = CLOCK + 3 * DAY + timedelta(hours=1)
    send(core, [on_clock("payment_succeeded", "late-payer", paid)])
    assert [(c["audience_id"], c["change"]) for c in changes(core, serde, 2)][1] == (
        "at_risk", "exited")
    assert timeline(worker, pid, "trait_cleared")
    assert wait_for(lambda: worker.metric("activation_profile_writes_total") >= 2, 30,
                    "the data action metric")


def win_back_customer(prefix: str) -> str:
    return next(f"{prefix}-{n}" for n in range(1000)
                if not in_holdout(new_profile_id(f"cid:{prefix}-{n}"), "win_back", 10, "2026"))


def gone(cust: str, canceled_days_ago: int, **traits: Any) -> list[Envelope]:
    return [on_clock("identify", cust, CLOCK - 2 * DAY, timezone="Europe/Berlin", **traits),
            *consents(cust, CLOCK - DAY, "marketing:email", "marketing:paid_media",
                      "marketing:push"),
            on_clock("subscription_started", cust, CLOCK - DAY,
                     {"plan": "pro", "start_date": date(2025, 1, 1)}),
            on_clock("subscription_canceled", cust, CLOCK,
                     {"cancel_date": (CLOCK - canceled_days_ago * DAY).date(),
                      "reason": "price"})]


def test_win_back_offers_by_variant_excludes_fraud_and_recent_refunds(
        repository: CoreStack, serde: AvroSerde, workers: Callable[..., Worker]) -> None:
    core = repository
    worker = workers(core.settings)
    tick(core, CLOCK)
    eligible, refunded, fraud = (win_back_customer(p) for p in ("left", "refunded", "fraud"))
    send(core, [*gone(eligible, 40), *gone(fraud, 40, fraud_flagged=True),
                on_clock("refund_issued", refunded, CLOCK - 10 * DAY), *gone(refunded, 40)])
    [email] = commands(core, serde, "email", 1)
    pid = new_profile_id(f"cid:{eligible}")
    assert email["profile_id"] == pid
    variant = email["variants"]["win_back/offer_test"]
    assert email["payload"]["template_id"] == {
        "ten_percent": "win_back_10_percent", "twenty_percent": "win_back_20_percent"}[variant]
    [note] = timeline(worker, pid, "experiment.assigned")
    assert note["detail"]["variant"] == variant
    assert wait_for(lambda: worker.metric(
        'activation_experiment_assignments_total{journey="win_back",step="offer_test",'
        f'variant="{variant}"}}') == 1, 30, "the assignment counted per variant")
    worker.kill()  # a restart keeps the enrollment and its variant
    worker = workers(core.settings)
    tick(core, CLOCK + 7 * DAY)
    [push] = commands(core, serde, "push", 1)
    assert (push["profile_id"], push["variants"]) == (pid, email["variants"])
    tick(core, CLOCK + 21 * DAY)  # the refund is 31 days old: now eligible
    entered = [(c["profile_id"], c["audience_id"]) for c in changes(core, serde, 2)
               if c["change"] == "entered"]
    assert entered == [(pid, "win_back"), (new_profile_id(f"cid:{refunded}"), "win_back")]
    assert len(commands(core, serde, "email", 3, deadline_s=5)) == 2  # never the fraud one
