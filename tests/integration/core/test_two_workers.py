"""Two workers share the partitions through one group; one dies, the other takes over."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from streams.core.pipeline import StageConfig
from streams.records import Envelope
from streams.serde import AvroSerde
from streams.topics import IDENTITY_INPUT, PROFILES
from tests.integration.core.conftest import LAYOUTS, CoreStack
from tests.integration.core.harness import Worker, free_port, produce, wait_for
from tests.integration.core.workload import (
    expected_profiles,
    fetch_views,
    group_caught_up,
    workload,
)

APPLIED = 'activation_stream_events_total{outcome="applied",stage="stream.profile"}'
SCREENED = 'activation_stream_events_total{outcome="forwarded",stage="stream.screen"}'


def assert_either_worker_answers(a: Worker, b: Worker, events: list[Envelope]) -> None:
    """Each worker answers for every profile, by identifier and by id: the one that does
    not own the identity stage or the profile's partition forwards to the one that does."""
    customers = sorted({e.identifiers.customer_id for e in events
                        if e.identifiers.customer_id})[:30]
    answers: dict[tuple[Worker, str], httpx.Response] = {}

    def all_answered() -> bool:
        for worker, cid in [(w, c) for w in (a, b) for c in customers]:
            if (worker, cid) not in answers or answers[(worker, cid)].status_code != 200:
                answers[(worker, cid)] = worker.get(f"/v1/profiles?customer_id={cid}")
        return all(r.status_code == 200 for r in answers.values())

    wait_for(all_answered, 120, "both workers answer for every profile")
    served_by = {r.headers.get("X-Activation-Served-By") for r in answers.values()}
    assert served_by - {None}, "no answer was forwarded: the partitions were not shared"
    assert all(r.json()["profile_id"] for r in answers.values())
    pid = answers[(a, customers[0])].json()["profile_id"]
    for worker in (a, b):
        assert worker.get(f"/v1/profiles/{pid}/timeline?limit=5").status_code == 200


@LAYOUTS
def test_survivor_takes_over_with_nothing_lost(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde, tmp_path: Path
) -> None:
    settings = core.settings
    encoded = [(e.key.encode(), core.encode(e.to_avro())) for e in workload(12_000, 300)]
    events = [Envelope.from_avro(serde.decode(value)[1]) for _, value in encoded]
    a = workers(settings, data_dir=tmp_path / "a")
    b = workers(settings, data_dir=tmp_path / "b", worker_web_port=free_port())
    sent = 0

    def trickle() -> bool:
        """A little at a time: a worker alone screens a big burst before the other joins."""
        nonlocal sent
        if sent < 3000:
            produce(settings, core.ingest, encoded[sent:sent + 50])
            sent += 50
        return a.metric(SCREENED) > 0 and b.metric(SCREENED) > 0

    wait_for(trickle, 120, "both workers own ingestion partitions")
    last = len(encoded) - 3000  # held back, to be sure the kill lands mid-stream
    produce(settings, core.ingest, encoded[sent:last])
    wait_for(lambda: a.metric(APPLIED) + b.metric(APPLIED) >= sent + 1000, 120,
             "work under way")
    assert_either_worker_answers(a, b, events[:sent])
    # Kill the worker that applied more (both own profile partitions), mid-stream.
    victim, survivor = (a, b) if a.metric(APPLIED) >= b.metric(APPLIED) else (b, a)
    produce(settings, core.ingest, encoded[last:])
    victim.kill()
    topics = {core.ingest: 3, settings.topic(IDENTITY_INPUT): settings.identity_partitions,
              settings.topic(PROFILES): settings.profile_partitions}
    assert not group_caught_up(settings, topics)  # mid-stream

    wait_for(lambda: group_caught_up(settings, topics), 300, "the survivor caught up")
    cfg = StageConfig(settings.dedup_window, settings.ordering_window,
                      settings.profile_timeline_limit)
    expected = expected_profiles(events, cfg, datetime.now(UTC))
    got = fetch_views(survivor, sorted(expected), settings.profile_timeline_limit)
    mismatched = [cid for cid in expected if got[cid] != expected[cid]]
    if mismatched:
        dump = {cid: {"got": got[cid], "expected": expected[cid]} for cid in mismatched[:5]}
        (tmp_path / "mismatch.json").write_text(json.dumps(dump, indent=1, sort_keys=True))
    assert not mismatched, f"{len(mismatched)} profiles differ, see {tmp_path}/mismatch.json"
