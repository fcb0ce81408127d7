"""Wiring: the consumer lag of each stage as ``activation_consumer_lag{stage}`` (read by
streams/lag.py on a thread, every 15 s)."""

from __future__ import annotations

from agents.context import Worker
from streams.lag import LagWatcher
from streams.topics import INGEST


def install(w: Worker) -> None:
    settings = w.settings

    async def start_lag_watcher() -> None:
        LagWatcher(settings, {
            "stream.screen": (settings.screen_group, [w.topic(INGEST)]),
            "stream.identity": (settings.app_id, [w.identity_topic.get_topic_name()]),
            "stream.profile": (settings.app_id, [w.profiles_topic.get_topic_name()]),
        }, lambda stage, lag: w.metrics.lag.labels(stage).set(lag)).start()

    w.app.task(start_lag_watcher)
