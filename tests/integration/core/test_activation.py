"""The guide's churn example through a real worker, broker and registry.

Billing sends the contract end date; the audience "contract ends within 30 days and
renewal not confirmed" takes the customer in (on the event, or later when time alone
makes it true, via the profile's timer); the journey emails and adds the customer to a
paid-media audience; ``contract_renewed`` ends it and removes the paid-media entry. A
customer without email consent gets no email, and the timeline says why. A SIGKILL of
the worker in between loses none of it. Time is the
worker's manual clock, moved by tick commands: no sleeps stand in for days.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.activation.distribution import publish
from streams.activation.governance import in_holdout
from streams.core.identity import new_profile_id
from streams.records import Envelope, Identifiers
from streams.serde import AvroSerde
from streams.settings import REPO_ROOT
from streams.topics import (
    ACTION_COMMAND,
    AUDIENCE_CHANGE_RECORD,
    AUDIENCE_CHANGES,
    IDENTITY_INPUT,
    PROFILES,
    action_topic,
)
from tests.integration.core.conftest import LAYOUTS, CoreStack
from tests.integration.core.harness import Worker, as_json, encode_all, produce, read_all, wait_for

JOURNEY = "churn_prevention"
# Noon UTC (afternoon in Berlin: no quiet hours) of a fixed day; activation's clock only.
CLOCK = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def customer(prefix: str) -> str:
    """A customer outside the journey's 10% holdout (the holdout is deterministic)."""
    return next(f"{prefix}-{n}" for n in range(1000)
                if not in_holdout(new_profile_id(f"cid:{prefix}-{n}"), JOURNEY, 10, "2026"))


def event(event_id: str, name: str, cust: str, payload: dict[str, Any] | None = None,
          **props: Any) -> Envelope:
    now = datetime.now(UTC)
    return Envelope(event_id=event_id, event_name=name, event_time=now, received_time=now,
                    source="billing", identifiers=Identifiers(customer_id=cust),
                    properties=props, payload=payload)


def onboarding(cust: str, email: str, end: date) -> list[Envelope]:
    return [
        event(f"{cust}-tz", "identify", cust, timezone="Europe/Berlin"),
        event(f"{cust}-c1", "consent_updated", cust,
              {"consent_type": "marketing:email", "status": email}),
        event(f"{cust}-c2", "consent_updated", cust,
              {"consent_type": "marketing:paid_media", "status": "GRANTED"}),
        event(f"{cust}-sub", "subscription_started", cust,
              {"plan": "pro", "start_date": CLOCK.date(), "contract_end_date": end}),
    ]


@pytest.fixture
def activation(core: CoreStack, serde: AvroSerde) -> CoreStack:
    """The core stack plus action and audience-change schemas and published definitions."""
    settings = core.settings.model_copy(update={"activation_clock": "manual"})
    for channel in ("email", "paid_media", "webhook", "crm"):
        serde.encoder(f"{settings.topic(action_topic(channel))}-value", ACTION_COMMAND,
                      register=True)
    serde.encoder(f"{settings.topic(AUDIENCE_CHANGES)}-value", AUDIENCE_CHANGE_RECORD,
                  register=True)
    publish(settings, REPO_ROOT / "definitions", "integration-test")
    return CoreStack(settings, core.ingest, core.dead_letter, core.encode)


def tick(core: CoreStack, at: datetime) -> None:
    body = json.dumps({"now": at.isoformat()}).encode()
    producer = Producer(core.settings.kafka_client_config())
    producer.produce(core.settings.topic(IDENTITY_INPUT), key=b"tick", value=body,
                     headers={"x-activation-command": b"tick"})
    assert producer.flush(30) == 0
    if core.settings.identity_partitions > 1:
        passed_barrier(core, body)


def passed_barrier(core: CoreStack, body: bytes, deadline_s: float = 60) -> None:
    """With slots, a tick reaches the profile partitions after the barrier's hops
    (streams/core/identity_tick.py), so events sent right after it could overtake it
    and be decided on the clock before it; with one partition it is ahead of them.
    Waits until every profile partition has the tick."""
    settings = core.settings
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"ticks-{time.time()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    topic, count = settings.topic(PROFILES), settings.profile_partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in range(count)])
    seen: set[int] = set()
    end = time.monotonic() + deadline_s
    try:
        while len(seen) < count and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() == body:
                seen.add(msg.partition())
    finally:
        consumer.close()
    assert len(seen) == count, f"the tick reached profile partitions {seen} of {count}"


def distinct(core: CoreStack, serde: AvroSerde, topic: str, n: int, id_field: str,
             deadline_s: float = 60) -> list[dict[str, Any]]:
    """The first ``n`` distinct records of a topic, deduplicated on ``id_field`` as
    consumers do (a worker killed before committing re-sends what it had sent)."""
    records = read_all(core.settings, serde, topic, n, deadline_s)
    unique = {r[id_field]: r for r in records}
    while len(unique) < n and len(records) < 4 * n:  # duplicates: read further
        more = read_all(core.settings, serde, topic, len(records) + 1, deadline_s)
        if len(more) == len(records):
            break
        records, unique = more, {r[id_field]: r for r in more}
    return list(unique.values())


def commands(core: CoreStack, serde: AvroSerde, channel: str, n: int,
             deadline_s: float = 60) -> list[tuple[str, ...]]:
    topic = core.settings.topic(action_topic(channel))
    return [(r["profile_id"], r["action_type"], r["step_id"])
            for r in distinct(core, serde, topic, n, "action_id", deadline_s)]


@LAYOUTS  # with slots, the ticks pass the barrier of streams/core/identity_tick.py
def test_churn_example(activation: CoreStack, serde: AvroSerde,
                       workers: Callable[..., Worker]) -> None:
    core = activation
    worker = workers(core.settings)
    tick(core, CLOCK)
    renewing, no_consent = customer("renewing"), customer("no-consent")
    a, b = new_profile_id(f"cid:{renewing}"), new_profile_id(f"cid:{no_consent}")
    # lz4-compressed like the gateway writes (a worker without the codec crashed on it).
    produce(core.settings, core.ingest, encode_all(core.encode, [
        *onboarding(renewing, "GRANTED", (CLOCK + timedelta(days=20)).date()),
        *onboarding(no_consent, "DENIED", (CLOCK + timedelta(days=40)).date())]),
        compression="lz4")
    # A's end date is 20 days away: in the audience on the event itself.
    assert commands(core, serde, "email", 1) == [(a, "send_email", "reminder_email")]
    assert commands(core, serde, "paid_media", 1) == [(a, "audience_add", "retarget")]
    # A worker killed (SIGKILL) and restarted keeps memberships, journeys and timers.
    worker.kill()
    worker = workers(core.settings)
    # B's is 40 days away: nothing yet; eleven days later time alone brings B in.
    tick(core, CLOCK + timedelta(days=11))
    assert commands(core, serde, "paid_media", 2)[1] == (b, "audience_add", "retarget")
    timeline = wait_for(lambda: (r := worker.get(f"/v1/profiles/{b}/timeline?limit=50"))
                        .status_code == 200 and as_json(r)["items"], 60, "B's timeline")
    withheld = [i for i in timeline if i["event_name"] == "decision.withheld"]
    assert [(i["detail"]["channel"], i["detail"]["rule"]) for i in withheld] == [
        ("email", "consent")]
    state = as_json(worker.get(f"/v1/profiles/{b}/activation"))
    assert state["audiences"] == ["contract_ending"] and JOURNEY in state["journeys"]
    # A renews: out of the audience and the journey, and off the paid-media audience.
    produce(core.settings, core.ingest, encode_all(core.encode, [event(
        f"{renewing}-renew", "contract_renewed", renewing,
        {"new_end_date": (CLOCK + timedelta(days=400)).date()})]), compression="zstd")
    assert commands(core, serde, "paid_media", 3)[2][:2] == (a, "audience_remove")
    changes = distinct(core, serde, core.settings.topic(AUDIENCE_CHANGES), 3, "change_id")
    assert sorted((c["profile_id"], c["change"]) for c in changes) == sorted(
        [(a, "entered"), (b, "entered"), (a, "exited")])
    assert len(commands(core, serde, "email", 2, deadline_s=3)) == 1  # none for B, ever
    assert wait_for(lambda: worker.metric("activation_suppressions_total") >= 1, 30,
                    "the suppression metric")


def test_a_merge_takes_the_merged_away_profile_out_of_its_journey(
        activation: CoreStack, serde: AvroSerde, workers: Callable[..., Worker]) -> None:
    core = activation
    workers(core.settings)
    tick(core, CLOCK)
    one, two = customer("merge-a"), customer("merge-b")
    winner, loser = sorted(new_profile_id(f"cid:{c}") for c in (one, two))
    end = (CLOCK + timedelta(days=20)).date()
    produce(core.settings, core.ingest, encode_all(core.encode, [
        *onboarding(one, "GRANTED", end), *onboarding(two, "GRANTED", end)]))
    assert sorted(c[:2] for c in commands(core, serde, "paid_media", 2)) == sorted(
        [(winner, "audience_add"), (loser, "audience_add")])
    # The same device seen with both customer ids: one person, two profiles merge.
    links = [replace(event(f"link-{c}", "identify", c),
                     identifiers=Identifiers(customer_id=c, anonymous_id="shared-device"))
             for c in (one, two)]
    produce(core.settings, core.ingest, encode_all(core.encode, links))
    assert commands(core, serde, "paid_media", 3)[2][:2] == (loser, "audience_remove")
    changes = distinct(core, serde, core.settings.topic(AUDIENCE_CHANGES), 3, "change_id")
    assert (loser, "exited") in [(c["profile_id"], c["change"]) for c in changes]


def test_a_renewal_during_quiet_hours_cancels_the_held_reminder(
        activation: CoreStack, serde: AvroSerde, workers: Callable[..., Worker]) -> None:
    """The guide's case: entered at 01:00 in Berlin, the reminder is held until 08:00;
    the customer renews at 01:46, so no reminder is ever emitted, and the timeline says
    why. Another customer withdraws email consent while held: cancelled, ``consent``."""
    core = activation
    night = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 01:00 in Berlin (CEST)
    worker = workers(core.settings)
    tick(core, night)
    renewing, revoking = customer("night-renew"), customer("night-revoke")
    a, b = new_profile_id(f"cid:{renewing}"), new_profile_id(f"cid:{revoking}")
    end = (night + timedelta(days=20)).date()
    produce(core.settings, core.ingest, encode_all(core.encode, [
        *onboarding(renewing, "GRANTED", end), *onboarding(revoking, "GRANTED", end)]))
    assert sorted(commands(core, serde, "paid_media", 2)) == sorted(
        [(a, "audience_add", "retarget"), (b, "audience_add", "retarget")])
    held = as_json(worker.get(f"/v1/profiles/{a}/activation"))["held"]
    assert [(h["channel"], h["not_before"]) for h in held] == [
        ("email", "2026-06-02T06:00:00+00:00")]
    tick(core, night + timedelta(minutes=46))
    produce(core.settings, core.ingest, encode_all(core.encode, [
        event(f"{renewing}-renew", "contract_renewed", renewing,
              {"new_end_date": (night + timedelta(days=400)).date()}),
        event(f"{revoking}-c3", "consent_updated", revoking,
              {"consent_type": "marketing:email", "status": "WITHDRAWN"})]))
    assert commands(core, serde, "paid_media", 3)[2][:2] == (a, "audience_remove")
    tick(core, night + timedelta(hours=8))  # past the end of quiet hours for both
    for pid, rule in ((a, "journey_exit"), (b, "consent")):
        items = wait_for(lambda pid=pid: [
            i for i in as_json(worker.get(f"/v1/profiles/{pid}/timeline?limit=50"))["items"]
            if i["event_name"] == "decision.cancelled"], 60, f"{pid}'s cancellation")
        assert [(i["detail"]["channel"], i["detail"]["rule"]) for i in items] == [
            ("email", rule)]
        assert as_json(worker.get(f"/v1/profiles/{pid}/activation"))["held"] == []
    assert commands(core, serde, "email", 1, deadline_s=3) == []  # never, for either
