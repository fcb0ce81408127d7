"""Wiring: the consumer lag of each stage as ``activation_consumer_lag{stage}`` (read by
streams/lag.py on a thread, every 15 s)."""

from __future__ import annotations

from agents.identity import owned as identity_owned
from agents.owned import PROFILES_TOPIC
from agents.screening import metrics
from streams.app import app, settings
from streams.lag import LagWatcher
from streams.topics import INGEST


async def start_lag_watcher() -> None:
    LagWatcher(settings, {
        "stream.screen": (settings.screen_group, [settings.topic(INGEST)]),
        "stream.identity": (settings.app_id, [identity_owned.topic_name]),
        "stream.profile": (settings.app_id, [PROFILES_TOPIC]),
    }, lambda stage, lag: metrics.lag.labels(stage).set(lag)).start()


app.task(start_lag_watcher)
