"""Each Faust patch: the upstream behaviour it corrects, and what it does instead.

The ``test_upstream_*`` tests run the unpatched upstream code (``faust_patches.upstream``
finds it under the patches) and fail the day upstream changes that behaviour: then read
docs/faust.md, and remove or adapt the patch. No broker: objects are built directly,
and stand-ins replace only what surrounds the code under test (a broker's answers).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, Mock

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.structs import TopicPartition
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue
from yarl import URL

from streams import faust_patches
from streams.app import ActivationApp, create_app
from streams.faust_patches import upstream
from streams.settings import load_settings

TRANSPORT = SimpleNamespace(url=[URL("kafka://127.0.0.1:9092")], default_port=9092)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ActivationApp]:
    """A fresh app (so the consumer it builds is this test's), patches applied."""
    yield create_app(load_settings().model_copy(update={"data_dir": tmp_path / "data",
                                                        "app_id": "patch-tests"}))


def thread_for(app: ActivationApp, in_transaction: bool = False) -> Any:
    """What ``_create_worker_consumer`` reads of its consumer thread."""
    return SimpleNamespace(app=app, consumer=SimpleNamespace(in_transaction=in_transaction))


def test_apply_all_is_idempotent_and_keeps_upstream_reachable() -> None:
    faust_patches.apply_all()
    faust_patches.apply_all()
    create = driver.AIOKafkaConsumerThread.__dict__["_create_worker_consumer"]
    assert faust_patches._names(create) == {"read_committed_only", "fetch_wait_from_settings",
                                            "faust_assignor_always"}
    for patch in faust_patches.PATCHES:
        original = upstream(patch.owner, patch.attribute)
        assert original.__module__.startswith(("faust.", "mode."))
        assert not hasattr(original, faust_patches.PATCH_MARK)


# --- keep_queued_messages_on_resume ------------------------------------------------------

async def test_upstream_resume_empties_faust_stream_buffers(app: ActivationApp) -> None:
    buffer = app.channel().queue  # a stream's buffer, as Faust makes it
    buffer.put_nowait("fetched during the seek")
    upstream(FlowControlEvent, "resume")(app.flow_control)
    assert buffer.empty()


def test_upstream_recovery_resumes_flow_after_seeking() -> None:
    """The order that loses the records fetched during the seek: seek, then resume."""
    for step in (Recovery._resume_streams, Recovery.on_recovery_completed):
        source = inspect.getsource(step)
        assert source.index("perform_seek()") < source.index("flow_control.resume()")


async def test_resume_keeps_buffers_and_clear_still_empties_them() -> None:
    flow = FlowControlEvent()
    buffer: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    buffer.put_nowait("kept")
    flow.resume()
    assert flow.is_active() and buffer.get_nowait() == "kept"
    buffer.put_nowait("revoked")
    flow.clear()  # what Faust calls on revocation
    assert buffer.empty()


# --- read_committed_only and faust_assignor_always -----------------------------------------

async def test_upstream_worker_consumer_reads_uncommitted_with_round_robin(
        app: ActivationApp) -> None:
    assert not app.tables.changelog_topics
    consumer = upstream(driver.AIOKafkaConsumerThread, "_create_worker_consumer")(
        thread_for(app), TRANSPORT)
    assert consumer._isolation_level == "read_uncommitted"
    assert consumer._partition_assignment_strategy == [RoundRobinPartitionAssignor]
    await consumer.stop()


async def test_upstream_reads_committed_only_in_its_exactly_once_mode(
        app: ActivationApp) -> None:
    """The only setting that changes the level also makes Faust's producers
    transactional (``processing_guarantee="exactly_once"``): not usable here."""
    consumer = upstream(driver.AIOKafkaConsumerThread, "_create_worker_consumer")(
        thread_for(app, in_transaction=True), TRANSPORT)
    assert consumer._isolation_level == "read_committed"
    await consumer.stop()


def test_upstream_aiokafka_reads_both_attributes_when_it_starts() -> None:
    """The patches set attributes of a consumer not yet started: aiokafka must read
    them in ``start`` (into its fetcher and group coordinator)."""
    source = inspect.getsource(AIOKafkaConsumer.start)
    assert "isolation_level=self._isolation_level" in source
    assert "assignors=self._partition_assignment_strategy" in source


async def test_worker_consumer_reads_committed_with_faust_assignor(app: ActivationApp) -> None:
    consumer = driver.AIOKafkaConsumerThread._create_worker_consumer(thread_for(app), TRANSPORT)
    assert consumer._isolation_level == "read_committed"
    assert consumer._partition_assignment_strategy == [app.assignor]
    await consumer.stop()


# --- fetch_wait_from_settings ---------------------------------------------------------------

async def test_upstream_worker_consumer_waits_a_fixed_one_and_a_half_seconds(
        app: ActivationApp) -> None:
    consumer = upstream(driver.AIOKafkaConsumerThread, "_create_worker_consumer")(
        thread_for(app), TRANSPORT)
    assert consumer._fetch_max_wait_ms == 1500
    await consumer.stop()


def test_upstream_aiokafka_keeps_one_fetch_in_flight_per_broker_and_reads_the_wait() -> None:
    """Why the wait matters: a node with a fetch in flight gets no other until it
    returns (a partition drained meanwhile waits for it); and the consumer hands the
    attribute to its fetcher when it starts."""
    source = inspect.getsource(Fetcher._get_actions_per_node)
    assert "node_id in self._in_flight" in source
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        AIOKafkaConsumer.start)


async def test_worker_consumer_waits_as_long_as_the_settings_say(tmp_path: Path) -> None:
    settings = load_settings().model_copy(update={
        "data_dir": tmp_path / "data", "app_id": "patch-tests",
        "worker_fetch_max_wait": timedelta(milliseconds=35)})
    app = create_app(settings)
    consumer = driver.AIOKafkaConsumerThread._create_worker_consumer(thread_for(app), TRANSPORT)
    assert consumer._fetch_max_wait_ms == 35
    await consumer.stop()


# --- seek_fresh_partitions_to_start --------------------------------------------------------

async def test_upstream_aiokafka_seeks_only_to_a_committed_offset_above_zero() -> None:
    consumer = AIOKafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:9092")
    parts = {TopicPartition("t", p): offset for p, offset in enumerate((None, 0, 5))}
    consumer._subscription = Mock(assigned_partitions=lambda: set(parts))  # the group's
    consumer.committed = AsyncMock(side_effect=lambda tp: parts[tp])  # the broker's answer
    consumer._fetcher = fetcher = Mock(close=AsyncMock())
    assert await consumer.seek_to_committed() == parts
    fetcher.seek_to.assert_called_once_with(TopicPartition("t", 2), 5)
    await consumer.stop()


def fresh_partitions(app: ActivationApp) -> tuple[Any, dict[TP, int | None]]:
    """The app's consumer, its committed offsets (none, 0, 5) as the broker's answer."""
    consumer: Any = app.consumer
    committed: dict[TP, int | None] = {TP("t", p): o for p, o in enumerate((None, 0, 5))}
    consumer.seek_to_committed = AsyncMock(return_value=committed)
    consumer.assignment = lambda: set(committed)
    consumer._seek = AsyncMock()  # the consumer thread's seek
    return consumer, committed


async def test_upstream_faust_seeks_no_partition_without_a_committed_offset(
        app: ActivationApp) -> None:
    assert "perform_seek" not in driver.Consumer.__dict__  # the base class's runs
    consumer, _ = fresh_partitions(app)
    await upstream(Consumer, "perform_seek")(consumer)
    consumer._seek.assert_not_awaited()
    assert consumer._committed_offset.get(TP("t", 1)) is None  # 0 is kept as None


async def test_partitions_without_a_committed_offset_are_read_from_the_start(
        app: ActivationApp) -> None:
    consumer, _ = fresh_partitions(app)
    await consumer.perform_seek()
    sought = sorted(call.args for call in consumer._seek.await_args_list)
    assert sought == [(TP("t", 0), 0), (TP("t", 1), 0)]


# --- gaps_exclude_the_record ----------------------------------------------------------------

async def drained(consumer: Any, tp: TP, offsets: list[int], add_gap: Any) -> None:
    """What ``Consumer._drain_messages`` records for these delivered offsets, all acked."""
    previous = None
    for offset in offsets:
        if previous is not None and offset - previous > 1:
            await add_gap(consumer, tp, previous + 1, offset)
        consumer._acked[tp].append(offset)  # what ``Consumer.ack`` records
        previous = offset


# Records of one-record transactions: a commit marker after each.
DELIVERED = [10, 12, 14, 16, 17, 19]


async def test_upstream_gap_includes_the_record_and_commit_crawls(app: ActivationApp) -> None:
    consumer: Any = app.consumer
    tp = TP("t", 0)
    consumer._committed_offset[tp] = 10
    await drained(consumer, tp, DELIVERED, upstream(Consumer, "_add_gap"))
    assert consumer._gap[tp].overlaps(12)  # the delivered record is inside its gap
    assert consumer._new_offset(tp) == 13  # not 20: the duplicated 12 stops the run


async def test_gap_without_the_record_commits_everything_acked(app: ActivationApp) -> None:
    consumer: Any = app.consumer
    tp = TP("t", 0)
    consumer._committed_offset[tp] = 10
    await drained(consumer, tp, DELIVERED, type(consumer)._add_gap)
    assert sorted((g.begin, g.end) for g in consumer._gap[tp]) == [(11, 12), (13, 14),
                                                                    (15, 16), (18, 19)]
    assert consumer._new_offset(tp) == 20
