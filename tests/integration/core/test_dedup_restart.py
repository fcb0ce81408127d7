"""Exact dedup survives a worker restart, even when its local RocksDB state is gone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.integration.core.conftest import CoreStack
from tests.integration.core.events import page_view, purchase
from tests.integration.core.harness import Worker, as_json, encode_all, produce, wait_for


def order_count(worker: Worker, customer: str, expected: int) -> Any:
    resp = worker.get(f"/v1/profiles?customer_id={customer}")
    if resp.status_code != 200:
        return None
    body = as_json(resp)
    return body if body["aggregates"]["order_count"] == expected else None


def test_duplicates_removed_across_restart_and_state_loss(
    core: CoreStack, workers: Callable[..., Worker], tmp_path: Path
) -> None:
    first = [purchase(f"e-{i}", f"c{i % 3}") for i in range(9)]
    produce(core.settings, core.ingest, encode_all(core.encode, first))
    worker = workers(core.settings)
    for c in range(3):
        wait_for(lambda c=c: order_count(worker, f"c{c}", 3), 60, f"c{c} with 3 orders")
    assert worker.metric("activation_stream_duplicates_total") == 0
    worker.stop()

    # The same events again (a producer retry after a timeout), then one new one.
    again = [*first, purchase("e-new", "c0")]
    produce(core.settings, core.ingest, encode_all(core.encode, again))
    restarted = workers(core.settings, data_dir=tmp_path / "fresh-state")
    wait_for(lambda: order_count(restarted, "c0", 4), 90, "the new event on c0")
    wait_for(lambda: restarted.metric("activation_stream_duplicates_total") >= 9, 60,
             "nine duplicates counted")
    assert restarted.metric("activation_stream_duplicates_total") == 9
    for c in (1, 2):  # their partitions' state rebuilt from the changelog, too
        wait_for(lambda c=c: order_count(restarted, f"c{c}", 3), 60, f"c{c} with 3 orders")


def test_expired_markers_are_purged_and_the_id_is_new_again(
    core: CoreStack, workers: Callable[..., Worker]
) -> None:
    worker = workers(core.settings, dedup_window=timedelta(seconds=2))
    produce(core.settings, core.ingest, encode_all(core.encode, [purchase("e-1", "c1")]))
    wait_for(lambda: order_count(worker, "c1", 1), 60, "the first purchase")
    ticks = iter(range(1_000_000))

    def purged() -> bool:
        # The sweep runs between events: keep a trickle flowing while waiting.
        produce(core.settings, core.ingest,
                encode_all(core.encode, [page_view(f"tick-{next(ticks)}", "c2")]))
        return worker.metric("activation_dedup_markers_purged_total") >= 1

    wait_for(purged, 90, "an expired marker purged")
    produce(core.settings, core.ingest, encode_all(core.encode, [purchase("e-1", "c1")]))
    wait_for(lambda: order_count(worker, "c1", 2), 60, "e-1 applied again after its window")
