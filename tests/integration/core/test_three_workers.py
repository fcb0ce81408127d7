"""Three workers in one group on the partitioned identity layout: every worker owns a
share of every stage (screening, identity, profiles), and when one leaves its share
moves to the others with nothing lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.core.pipeline import StageConfig
from streams.records import Envelope
from streams.serde import AvroSerde
from streams.topics import IDENTITY_INPUT, PROFILES
from tests.integration.core.conftest import CoreStack
from tests.integration.core.harness import Worker, as_json, free_port, produce, wait_for
from tests.integration.core.workload import (
    expected_profiles,
    fetch_views,
    group_caught_up,
    workload,
)

STAGES = ("stream.screen", "stream.identity", "stream.profile")
SLOTS = 3


def ownership(workers: list[Worker]) -> dict[str, dict[str, list[int]]]:
    return {w.base: as_json(w.get("/v1/ownership"))["owned"] for w in workers}


def table(owned: dict[str, dict[str, list[int]]]) -> str:
    lines = [f"{'worker':<28}" + "".join(f"{s:<20}" for s in STAGES)]
    lines += [f"{url:<28}" + "".join(f"{str(parts[s]):<20}" for s in STAGES)
              for url, parts in owned.items()]
    return "\n".join(lines)


def shared_by_all(workers: list[Worker]) -> dict[str, dict[str, list[int]]] | None:
    owned = ownership(workers)
    return owned if all(parts[s] for parts in owned.values() for s in STAGES) else None


@pytest.mark.parametrize("core", [SLOTS], indirect=True, ids=[f"slots{SLOTS}"])
def test_three_workers_share_every_stage_and_one_leaving_loses_nothing(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde, tmp_path: Path
) -> None:
    settings = core.settings
    encoded = [(e.key.encode(), core.encode(e.to_avro())) for e in workload(6_000, 600)]
    events = [Envelope.from_avro(serde.decode(value)[1]) for _, value in encoded]
    started = [workers(settings, data_dir=tmp_path / name, worker_web_port=free_port())
               for name in "abc"]
    produce(settings, core.ingest, encoded[:3000])
    owned = wait_for(lambda: shared_by_all(started), 180, "every worker owning every stage")
    print("\nownership, three workers:\n" + table(owned))
    # One leaves (a clean stop: a rolling deploy); its share moves to the other two.
    leaving, staying = started[0], started[1:]
    leaving.stop()
    produce(settings, core.ingest, encoded[3000:])

    def moved() -> dict[str, dict[str, list[int]]] | None:
        now = ownership(staying)
        counts = {"stream.screen": settings.ingest_partitions, "stream.identity": SLOTS,
                  "stream.profile": settings.profile_partitions}
        whole = all(sorted(p for parts in now.values() for p in parts[s]) == list(range(n))
                    for s, n in counts.items())
        return now if whole else None

    print("after one left:\n" + table(wait_for(moved, 180, "the leaver's share moved")))
    topics = {core.ingest: settings.ingest_partitions,
              settings.topic(IDENTITY_INPUT): SLOTS,
              settings.topic(PROFILES): settings.profile_partitions}
    wait_for(lambda: group_caught_up(settings, topics), 300, "the two caught up")
    cfg = StageConfig(settings.dedup_window, settings.ordering_window,
                      settings.profile_timeline_limit)
    expected = expected_profiles(events, cfg, datetime.now(UTC))
    got: dict[str, Any] = fetch_views(staying[0], sorted(expected),
                                      settings.profile_timeline_limit)
    mismatched = [cid for cid in expected if got[cid] != expected[cid]]
    if mismatched:
        dump = {cid: {"got": got[cid], "expected": expected[cid]} for cid in mismatched[:5]}
        (tmp_path / "mismatch.json").write_text(json.dumps(dump, indent=1, sort_keys=True))
    assert not mismatched, f"{len(mismatched)} profiles differ, see {tmp_path}/mismatch.json"
    # Customers whose identifiers live in different slots were linked by the protocol.
    sent = sum(w.metric("activation_identity_protocol_messages_total") for w in staying)
    print(f"protocol messages sent by the two staying: {sent:,.0f}")
    assert sent > 0
