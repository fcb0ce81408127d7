"""A deterministic mixed workload and its expected profiles (the pure pipeline, no crash)."""

from __future__ import annotations

import random
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.core.pipeline import StageConfig
from streams.core.profile import timeline_page, to_api
from streams.core.sandbox import Sandbox as Stages
from streams.records import Envelope, Identifiers
from streams.settings import Settings
from streams.topics import INGEST
from tests.integration.core.harness import Worker, as_json

START = datetime(2026, 1, 1, tzinfo=UTC)


def partition_of(customer: str, partitions: int) -> int:
    return zlib.crc32(customer.encode()) % partitions


def _payload(rng: random.Random, name: str, i: int) -> dict[str, Any] | None:
    if name == "purchase_completed":
        cents = Decimal(rng.randint(100, 99_999)) / 100
        return {"order_id": f"o{i}", "order_value": cents, "currency": "EUR",
                "product_ids": [f"sku{rng.randint(1, 50)}"]}
    if name == "consent_updated":
        return {"consent_type": rng.choice(["marketing:email", "marketing:sms"]),
                "status": rng.choice(["GRANTED", "DENIED", "WITHDRAWN"])}
    if name == "subscription_started":
        return {"plan": rng.choice(["basic", "pro"]), "start_date": date(2026, 1, 1),
                "subscription_id": "s1", "contract_end_date": date(2026, 12, 31)}
    if name == "subscription_canceled":
        return {"cancel_date": date(2026, 6, 1), "reason": "price", "subscription_id": "s1"}
    return None


NAMES = ["purchase_completed", "consent_updated", "subscription_started",
         "subscription_canceled", "page_viewed", "identify"]


def workload(n: int, customers: int, seed: int = 7) -> list[Envelope]:
    """``n`` events (about 2% re-sent duplicates, about 10% out of order, some late)."""
    rng = random.Random(seed)
    events: list[Envelope] = []
    while len(events) < n:
        i = len(events)
        if events and rng.random() < 0.02:
            events.append(rng.choice(events[-500:]))
            continue
        customer = f"c{rng.randrange(customers)}"
        name = rng.choice(NAMES)
        skew = -rng.randint(10, 3600) if rng.random() < 0.1 else rng.randint(0, 5)
        when = START + timedelta(seconds=i + skew)
        events.append(Envelope(
            event_id=f"ev{i}", event_name=name, event_time=when, received_time=when,
            source="kafka:crash-test",
            identifiers=Identifiers(customer_id=customer, anonymous_id=f"a-{customer}"),
            properties={"tier": rng.choice(["gold", "silver"])} if name == "identify" else {},
            payload=_payload(rng, name, i)))
    return events


def expected_profiles(events: list[Envelope], cfg: StageConfig,
                      now: datetime) -> dict[str, dict[str, Any]]:
    """What a worker that never crashed ends with: API views by customer id."""
    stages = Stages(cfg, partitions=1)
    for ev in events:
        stages.send(ev, now)
    out = {}
    for ev in events:
        cid = ev.identifiers.customer_id
        assert cid is not None
        if cid not in out:
            profile = stages.customer(cid)
            out[cid] = view(to_api(profile), timeline_page(profile, 0, cfg.timeline_limit))
    return out


def view(profile: dict[str, Any], timeline: dict[str, Any]) -> dict[str, Any]:
    return {"profile": profile, "timeline": timeline["items"]}


def fetch_views(worker: Worker, customers: list[str], limit: int) -> dict[str, Any]:
    """The API's view of each customer's profile and timeline."""
    out = {}
    for cid in customers:
        profile = as_json(worker.get(f"/v1/profiles?customer_id={cid}"))
        timeline = as_json(worker.get(f"/v1/profiles/{profile['profile_id']}/timeline"
                                      f"?limit={limit}"))
        out[cid] = view(profile, timeline)
    return out


def group_caught_up(settings: Settings, topics: dict[str, int]) -> bool:
    """True when the workers committed every partition up to its end (the ingestion
    topic in the screening stage's group, the others in Faust's)."""
    ingest = settings.topic(INGEST)
    return all(
        _caught_up(settings, settings.screen_group if topic == ingest else settings.app_id,
                   {topic: n})
        for topic, n in topics.items())


def _caught_up(settings: Settings, group: str, topics: dict[str, int]) -> bool:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        behind = []
        for tp in consumer.committed(tps, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                behind.append(tp)
        return all(_only_markers_left(settings, tp) for tp in behind)
    finally:
        consumer.close()


def _only_markers_left(settings: Settings, tp: TopicPartition) -> bool:
    """Whether nothing but transaction markers lies past the committed offset ``tp``:
    the internal topics are written in transactions (the profile topic always, the
    identity topic by its slots), and consumers never commit past a final marker."""
    probe = Consumer({**settings.kafka_client_config(), "group.id": "caught-up-probe",
                      "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        probe.assign([TopicPartition(tp.topic, tp.partition, max(tp.offset, 0))])
        if probe.consume(1, 2.0):
            return False  # a record the group has not committed yet
        _, high = probe.get_watermark_offsets(tp, timeout=10)
        (position,) = probe.position([TopicPartition(tp.topic, tp.partition)])
        return position.offset >= high
    finally:
        probe.close()
