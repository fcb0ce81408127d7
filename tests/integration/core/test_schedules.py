"""A scheduled action through two real workers sharing the profile partitions.

Each worker runs the schedule over the profiles of the partitions it owns, on the tick
commands of the manual clock: every matching profile gets exactly one command per tick
(read back read_committed, so a copy of an aborted transaction would not hide a double),
ticking again does nothing, a manual run (scripts/schedules run) of an instant that ran
acts once, and a dry run counts the same profiles from the changelog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.activation.actions import action_id_for
from streams.activation.definitions import Scalar
from streams.activation.distribution import publish
from streams.activation.schedules import trigger_of
from streams.core.identity import new_profile_id
from streams.records import Envelope, Identifiers
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import (
    ACTION_COMMAND,
    AUDIENCE_CHANGE_RECORD,
    AUDIENCE_CHANGES,
    IDENTITY_INPUT,
    action_topic,
)
from tests.integration.core.conftest import CoreStack
from tests.integration.core.harness import (
    REPO,
    Worker,
    encode_all,
    free_port,
    produce,
    settings_env,
    wait_for,
)

SCHEDULE = "hourly_pro"
FILES = {
    "governance.yaml": "default_timezone: Europe/Berlin\nholdout_percent: 0\n",
    f"schedules/{SCHEDULE}.yaml": """
cron: "0 * * * *"
timezone: Europe/Berlin
condition: {trait: plan, op: eq, value: pro}
action: {channel: crm, action_type: update_crm, purpose: service, payload: {task: call}}
""",
}
CLOCK = datetime(2026, 6, 1, 11, 30, tzinfo=UTC)
TICK = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # the first cron instant after CLOCK
APPLIED = 'activation_stream_events_total{outcome="applied",stage="stream.profile"}'


@pytest.fixture
def scheduled(core: CoreStack, serde: AvroSerde, tmp_path: Path) -> CoreStack:
    """The core stack with action schemas and a definitions set holding one schedule."""
    settings = core.settings.model_copy(update={"activation_clock": "manual"})
    for channel in ("email", "paid_media", "webhook", "crm"):
        serde.encoder(f"{settings.topic(action_topic(channel))}-value", ACTION_COMMAND,
                      register=True)
    serde.encoder(f"{settings.topic(AUDIENCE_CHANGES)}-value", AUDIENCE_CHANGE_RECORD,
                  register=True)
    root = tmp_path / "definitions"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    publish(settings, root, "integration-test")
    return CoreStack(settings, core.ingest, core.dead_letter, core.encode)


def tick(settings: Settings, at: datetime) -> None:
    producer = Producer(settings.kafka_client_config())
    producer.produce(settings.topic(IDENTITY_INPUT), key=b"tick",
                     value=json.dumps({"now": at.isoformat()}).encode(),
                     headers={"x-activation-command": b"tick"})
    assert producer.flush(30) == 0


def committed_commands(settings: Settings, serde: AvroSerde, expected: int,
                       settle_s: float = 3.0, deadline_s: float = 60) -> list[dict[str, Any]]:
    """Every committed record of the crm topic once ``expected`` arrived, and whatever
    else arrives within ``settle_s`` (a double would show up)."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"r-{time.time()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(settings.topic(action_topic("crm")), 0, 0)])
    out: list[dict[str, Any]] = []
    end, quiet_until = time.monotonic() + deadline_s, None
    try:
        while time.monotonic() < end and (quiet_until is None or time.monotonic() < quiet_until):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(serde.decode(msg.value())[1])
            if len(out) >= expected and quiet_until is None:
                quiet_until = time.monotonic() + settle_s
    finally:
        consumer.close()
    return out


def claims_profiles(worker: Worker) -> bool:
    """Whether the worker claimed a profile partition's store (its log says so). The
    group's description would say who owns what, but librdkafka's describe does not
    answer for a group using Faust's assignor."""
    return "state profiles[" in worker.log_path.read_text(errors="replace")


def scripts_schedules(settings: Settings, *args: str) -> str:
    env = {**os.environ, **settings_env(settings)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "schedules"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def onboarding(customers: dict[str, str]) -> list[Envelope]:
    out = []
    for cust, plan in customers.items():
        for suffix, name, props, payload in (
                ("id", "identify", {"plan": plan}, None),
                ("c", "consent_updated", {}, {"consent_type": "service:crm",
                                              "status": "GRANTED"})):
            out.append(Envelope(event_id=f"{cust}-{suffix}", event_name=name,
                                event_time=CLOCK, received_time=CLOCK, source="crm",
                                identifiers=Identifiers(customer_id=cust),
                                properties=dict[str, Scalar](props), payload=payload))
    return out


def test_two_workers_act_once_per_profile_per_tick(
        scheduled: CoreStack, serde: AvroSerde, workers: Callable[..., Worker],
        tmp_path: Path, uid: str) -> None:
    settings = scheduled.settings
    a = workers(settings, data_dir=tmp_path / "a")
    b = workers(settings, data_dir=tmp_path / "b", worker_web_port=free_port())
    # The second worker's claim comes after the group's last rebalance: both own some.
    wait_for(lambda: claims_profiles(a) and claims_profiles(b), 90,
             "both workers own profile partitions")
    customers = {f"{uid}-{n}": "pro" if n % 3 else "basic" for n in range(24)}
    pro = sorted(new_profile_id(f"cid:{c}") for c, plan in customers.items() if plan == "pro")
    produce(settings, scheduled.ingest, encode_all(scheduled.encode, onboarding(customers)))
    wait_for(lambda: a.metric(APPLIED) + b.metric(APPLIED) >= 2 * len(customers), 90,
             "every event applied")

    tick(settings, CLOCK)  # first seen: the schedule starts from 12:00, no back-fill
    tick(settings, TICK + timedelta(seconds=1))
    tick(settings, TICK + timedelta(seconds=30))  # the same cron tick again: nothing more
    first = committed_commands(settings, serde, len(pro))
    assert sorted(c["profile_id"] for c in first) == pro  # each once
    trigger = trigger_of(SCHEDULE, TICK)
    assert sorted(c["action_id"] for c in first) == sorted(
        action_id_for(p, None, None, None, trigger, "update_crm") for p in pro)
    assert a.metric("activation_actions_total") > 0 and b.metric("activation_actions_total") > 0

    # By hand: the instant that ran acts no more; a new one acts once, however often asked.
    scripts_schedules(settings, "run", SCHEDULE, "--at", TICK.isoformat())
    later = (TICK + timedelta(minutes=30)).isoformat()
    assert later in scripts_schedules(settings, "run", SCHEDULE, "--at", later)
    scripts_schedules(settings, "run", SCHEDULE, "--at", later)
    both = committed_commands(settings, serde, 2 * len(pro))
    assert len(both) == 2 * len(pro)
    assert sorted(c["profile_id"] for c in both[len(pro):]) == pro

    dry = scripts_schedules(settings, "run", SCHEDULE, "--dry-run", "--at", later)
    assert f"{len(customers)} profiles, {len(pro)} matched" in dry
    assert ["sent:allowed", str(len(pro))] in [line.split() for line in dry.splitlines()]
    assert SCHEDULE in scripts_schedules(settings, "list")
