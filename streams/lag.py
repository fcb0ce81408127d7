"""Consumer lag per stage: how many records of its input a consumer group has not yet
committed, summed over partitions, read every ``interval`` seconds on a daemon thread
(the group's committed offsets and the partitions' high watermarks; nothing joins the
group). A stage whose lag grows while its commits stay flat is stuck: the alert rules
in observability/alerts.yml say so."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, TopicPartition

from streams.follower import partitions_of
from streams.settings import Settings

log = logging.getLogger(__name__)
# stage -> (consumer group, topics it reads)
Groups = Mapping[str, tuple[str, list[str]]]


def group_lag(settings: Settings, group: str, topics: list[str], timeout_s: float = 10.0
              ) -> int:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": group,
                         "enable.auto.commit": False, "log_level": 3,
                         "client.id": f"lag-{uuid.uuid4().hex[:8]}"})
    try:
        parts = [TopicPartition(t, p) for t in topics for p in partitions_of(consumer, t)]
        total = 0
        for tp in consumer.committed(parts, timeout=timeout_s):
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            committed = tp.offset if tp.offset >= 0 else low  # none yet: from the start
            total += max(0, high - committed)
        return total
    finally:
        consumer.close()


class LagWatcher:
    def __init__(self, settings: Settings, groups: Groups,
                 report: Callable[[str, int], None], interval_s: float = 15.0) -> None:
        self._settings, self._groups, self._report = settings, groups, report
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for stage, (group, topics) in self._groups.items():
                try:
                    self._report(stage, group_lag(self._settings, group, topics))
                except Exception as exc:  # a gauge must never kill the worker
                    log.debug("lag of %s not read: %s", stage, exc)
