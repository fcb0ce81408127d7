"""SIGKILL mid-stream, restart: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from streams.core.pipeline import StageConfig
from streams.records import Envelope
from streams.serde import AvroSerde
from streams.topics import IDENTITY_INPUT, PROFILES
from tests.integration.core.conftest import LAYOUTS, CoreStack
from tests.integration.core.harness import Worker, produce, wait_for
from tests.integration.core.workload import (
    expected_profiles,
    fetch_views,
    group_caught_up,
    partition_of,
    workload,
)

EVENTS, CUSTOMERS = 20_000, 2_000


@LAYOUTS
def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde, tmp_path: Path
) -> None:
    settings = core.settings
    encoded = [(e.key, core.encode(e.to_avro())) for e in workload(EVENTS, CUSTOMERS)]
    # What the worker sees: the events after an Avro round trip (decimal scale 4).
    events = [Envelope.from_avro(serde.decode(value)[1]) for _, value in encoded]
    parts = settings.ingest_partitions
    for p in range(parts):
        mine = [(k.encode(), v) for k, v in encoded if partition_of(k, parts) == p]
        produce(settings, core.ingest, mine, partition=p)
    worker = workers(settings)
    applied = "activation_stream_events_total{outcome=\"applied\",stage=\"stream.profile\"}"
    wait_for(lambda: worker.metric(applied) >= EVENTS // 4, 300, "a quarter processed")
    worker.kill()
    internal = {settings.topic(IDENTITY_INPUT): settings.identity_partitions,
                settings.topic(PROFILES): settings.profile_partitions}
    assert not group_caught_up(settings, internal)  # mid-stream

    restarted = workers(settings)
    topics = {core.ingest: parts, **internal}
    wait_for(lambda: group_caught_up(settings, topics), 600, "the group caught up")

    cfg = StageConfig(settings.dedup_window, settings.ordering_window,
                      settings.profile_timeline_limit)
    expected = expected_profiles(events, cfg, datetime.now(UTC))
    got = fetch_views(restarted, sorted(expected), settings.profile_timeline_limit)
    assert len(got) == len(expected) == CUSTOMERS
    mismatched = [cid for cid in expected if got[cid] != expected[cid]]
    if mismatched:
        dump = {cid: {"got": got[cid], "expected": expected[cid]} for cid in mismatched[:5]}
        (tmp_path / "mismatch.json").write_text(json.dumps(dump, indent=1, sort_keys=True))
    assert not mismatched, f"{len(mismatched)} profiles differ, see {tmp_path}/mismatch.json"
    total_orders = sum(v["profile"]["aggregates"]["order_count"] for v in got.values())
    assert total_orders == sum(
        v["profile"]["aggregates"]["order_count"] for v in expected.values())
