"""An identity layout migration on the real broker (docs/partitioned-identity.md, 7.1):
a worker on the single layout (with merges: customers logging in on another's device),
drained with screening off while producers keep writing, stopped, migrated to three
slots, and a worker on three slots goes on: every profile equals the workload's
reference, re-sent events across the cut included; the merged ones (whose events now
reach them from two slots, in either order) in what does not depend on that order."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streams.core.identity_migrate import MigrationError
from streams.core.pipeline import StageConfig
from streams.identity_drain import drain_problems
from streams.identity_migrate import check, migrate
from streams.records import Envelope, Identifiers
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import IDENTITY_INPUT, PROFILES
from tests.integration.core.conftest import SINGLE, CoreStack
from tests.integration.core.harness import REPO, Worker, produce, settings_env, wait_for
from tests.integration.core.workload import (
    expected_profiles,
    fetch_views,
    group_caught_up,
    partition_of,
    workload,
)

EVENTS, CUSTOMERS, SLOTS = 4_000, 400, 3
LINKS = 12


def links(events: list[Envelope], parts: int) -> list[Envelope]:
    """Customer c_i logs in on c_j's device: c_j's profile merges into c_i's. Pairs share
    an ingestion partition so that the worker sees their events in the reference's order."""
    keys = {str(e.identifiers.customer_id): e.key for e in events}
    by_part: dict[int, list[str]] = {}
    for cid in sorted(keys, key=lambda c: int(c[1:])):
        by_part.setdefault(partition_of(keys[cid], parts), []).append(cid)
    pairs = [(p[i], p[i + 1]) for p in by_part.values() for i in range(0, 8, 2)]
    when = max(e.event_time for e in events)
    return [replace(events[0], event_id=f"link-{a}-{b}", event_name="identify",
                    event_time=when, received_time=when, payload=None, properties={},
                    identifiers=Identifiers(customer_id=a, anonymous_id=f"a-{b}"))
            for a, b in pairs[:LINKS]]


def projection(view: dict[str, Any]) -> dict[str, Any]:
    """What does not depend on the order two slots' events reach the merged profile."""
    profile = view["profile"]
    return {"id": profile["profile_id"], "identifiers": profile["identifiers"],
            "aggregates": profile["aggregates"],
            "events": sorted(item["event_id"] for item in view["timeline"])}


def produce_all(core: CoreStack, encoded: list[tuple[str, bytes]]) -> None:
    parts = core.settings.ingest_partitions
    for p in range(parts):
        mine = [(k.encode(), v) for k, v in encoded if partition_of(k, parts) == p]
        produce(core.settings, core.ingest, mine, partition=p)


@dataclass
class Scenario:
    """The workload cut in two around the links, and the steps both tests share."""

    core: CoreStack
    workers: Callable[..., Worker]
    encoded: list[tuple[str, bytes]]
    events: list[Envelope]
    linked: list[Envelope]
    cut: int

    @classmethod
    def of(cls, core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde
           ) -> Scenario:
        encoded = [(e.key, core.encode(e.to_avro())) for e in workload(EVENTS, CUSTOMERS)]
        cut = EVENTS // 2
        linked = links([Envelope.from_avro(serde.decode(v)[1]) for _, v in encoded[:cut]],
                       core.settings.ingest_partitions)
        encoded[cut:cut] = [(e.key, core.encode(e.to_avro())) for e in linked]
        cut += len(linked)
        events = [Envelope.from_avro(serde.decode(value)[1]) for _, value in encoded]
        crossing = {e.event_id for e in events[:cut]} & {e.event_id for e in events[cut:]}
        assert crossing  # re-sent events whose first copy is on the layout migrated from
        return cls(core, workers, encoded, events, linked, cut)

    def caught_up(self, settings: Settings, worker: Worker) -> bool:
        worker.ready()  # fails at once if the worker exited
        return group_caught_up(settings, {
            self.core.ingest: settings.ingest_partitions,
            settings.topic(IDENTITY_INPUT): settings.identity_partitions,
            settings.topic(PROFILES): settings.profile_partitions})

    def part_one(self) -> None:
        """The events before the cut, then the links (after their customers' events)."""
        settings = self.core.settings
        first = self.workers(settings)
        produce_all(self.core, self.encoded[:self.cut - LINKS])
        wait_for(lambda: self.caught_up(settings, first), 600, "part one done")
        produce_all(self.core, self.encoded[self.cut - LINKS:self.cut])
        wait_for(lambda: self.caught_up(settings, first), 600, "links done")
        first.stop()

    def part_two(self, slots: int, tmp_path: Path) -> Worker:
        """A worker on the new layout over the rest; every profile as the reference's."""
        settings = self.core.settings.model_copy(update={"identity_partitions": slots})
        last = self.workers(settings)
        produce_all(self.core, self.encoded[self.cut:])
        wait_for(lambda: self.caught_up(settings, last), 600, "part two done")
        cfg = StageConfig(settings.dedup_window, settings.ordering_window,
                          settings.profile_timeline_limit)
        expected = expected_profiles(self.events, cfg, datetime.now(UTC))
        got = fetch_views(last, sorted(expected), settings.profile_timeline_limit)
        assert len(got) == len(expected) == CUSTOMERS
        merged = {str(e.identifiers.customer_id) for e in self.linked} | {
            str(e.identifiers.anonymous_id)[2:] for e in self.linked}
        assert all(projection(got[c]) == projection(expected[c]) for c in merged)
        mismatched = [c for c in expected if c not in merged and got[c] != expected[c]]
        if mismatched:
            dump = {c: {"got": got[c], "expected": expected[c]} for c in mismatched[:5]}
            (tmp_path / "mismatch.json").write_text(json.dumps(dump, indent=1,
                                                               sort_keys=True))
        assert not mismatched, (f"{len(mismatched)} profiles differ, see "
                                f"{tmp_path}/mismatch.json")
        assert last.metric("activation_stream_duplicates_total") > 0
        return last


@SINGLE
def test_single_to_three_slots_goes_on_with_the_same_profiles(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = core.settings
    scenario = Scenario.of(core, workers, serde)
    scenario.part_one()

    # The drain switch: screening off, producers go on writing; nothing more is screened.
    monkeypatch.setenv("ACTIVATION_SCREENING", "off")
    draining = workers(settings)
    produce_all(core, scenario.encoded[scenario.cut:scenario.cut + 500])
    wait_for(lambda: not drain_problems(settings), 120, "the internal topics drained")
    assert not group_caught_up(settings, {core.ingest: settings.ingest_partitions})
    draining.stop()
    monkeypatch.delenv("ACTIVATION_SCREENING")
    del scenario.encoded[scenario.cut:scenario.cut + 500]  # produced (events: all kept)

    migrate(settings, SLOTS)
    assert check(settings, SLOTS) == []
    script = subprocess.run(  # the operator's command, same verdict
        [str(REPO / "scripts/identity"), "migrate", "--to", str(SLOTS), "--check"],
        env={**os.environ, **settings_env(settings)}, capture_output=True, text=True,
        timeout=300)
    assert script.returncode == 0, script.stdout + script.stderr
    scenario.part_two(SLOTS, tmp_path)


@pytest.mark.parametrize("core", [SLOTS], indirect=True, ids=["slots3"])
@pytest.mark.parametrize("target", [1, 5], ids=["to1", "to5"])
def test_three_slots_to_another_count(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde, tmp_path: Path,
    admin: AdminClient, target: int,
) -> None:
    """To one slot through the refusal and the deletion of internal.identity (Kafka
    cannot remove partitions); to five over the same changelog, grown. Run twice: the
    second run finds nothing to write."""
    settings = core.settings
    scenario = Scenario.of(core, workers, serde)
    scenario.part_one()

    topic = settings.topic(IDENTITY_INPUT)
    if target < SLOTS:
        with pytest.raises(MigrationError, match="delete it"):
            migrate(settings, target)
        admin.delete_topics([topic])[topic].result(30)
        wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 60, "deleted")
    migrate(settings, target)
    lines: list[str] = []
    migrate(settings, target, say=lines.append)
    assert any(line.startswith("wrote 0 records") for line in lines)
    assert check(settings, target) == []
    scenario.part_two(target, tmp_path)
