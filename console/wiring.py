"""The real console, built from the settings: its readers of the platform's topics, the
key store, the workers' API client. Nothing starts until the app does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from console.access import Keys
from console.app import Background, Console
from console.deadletters import DELIVERY, STREAM, DeadLetterIndex, serde_for
from console.definitions import History, follow
from console.feeds import Start, TopicTail
from console.live import LiveFeed, LiveHub
from console.metrics import ConsoleMetrics
from console.operations import KafkaOperations
from console.sessions import SessionStore
from console.stats import Stats
from console.worker_api import WorkerApi
from streams.delivery.control import Control, ControlFollower
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import (
    ACTION_COMMAND,
    AUDIENCE_CHANGES,
    DEAD_LETTER,
    DELIVERY_CONTROL,
    DELIVERY_DEAD_LETTER,
    DELIVERY_OUTCOMES,
    INGEST,
    declared_topics,
)


def action_topics(settings: Settings) -> list[str]:
    return [s.name for s in declared_topics(settings) if s.value_type == ACTION_COMMAND]


def stats_reader(settings: Settings, stats: Stats, serde: AvroSerde) -> TopicTail:
    """Audience changes, action commands and delivery outcomes of the last
    ``console_stats_window``, then as they come."""
    route: dict[str, Callable[[dict[str, Any]], None]] = {
        settings.topic(AUDIENCE_CHANGES): stats.change,
        settings.topic(DELIVERY_OUTCOMES): stats.outcome,
        **{topic: stats.command for topic in action_topics(settings)}}

    def handle(msg: Message) -> None:
        route[msg.topic() or ""](serde.decode(msg.value())[1])

    since = datetime.now(UTC) - settings.console_stats_window
    return TopicTail(settings, sorted(route), Start(since=since), handle, "console-stats")


def build(settings: Settings, registry: CollectorRegistry | None = None) -> Console:
    registry = registry or CollectorRegistry()
    http = httpx.AsyncClient()
    hub, stats, history, control = LiveHub(), Stats(), History(), Control()
    # One serde per reader thread: each decodes on its own.
    feed = LiveFeed(hub, serde_for(settings), settings.topic(INGEST),
                    settings.console_live_rate)
    stream_letters = DeadLetterIndex(STREAM, serde_for(settings))
    delivery_letters = DeadLetterIndex(DELIVERY, serde_for(settings))
    background: list[Background] = [
        TopicTail(settings, [settings.topic(INGEST), settings.topic(DEAD_LETTER)],
                  Start(backlog=settings.console_live_backlog), feed.handle, "console-live"),
        TopicTail(settings, [settings.topic(DEAD_LETTER)], Start(), stream_letters.apply,
                  "console-deadletters"),
        TopicTail(settings, [settings.topic(DELIVERY_DEAD_LETTER)], Start(),
                  delivery_letters.apply, "console-delivery-deadletters"),
        stats_reader(settings, stats, serde_for(settings)),
        follow(settings, history),
        ControlFollower(settings, settings.topic(DELIVERY_CONTROL), control),
    ]
    return Console(
        settings=settings, keys=Keys.from_settings(settings),
        sessions=SessionStore(settings.console_session_idle),
        api=WorkerApi(settings.console_workers, http), hub=hub, history=history,
        stats=stats, stream_letters=stream_letters, delivery_letters=delivery_letters,
        control=control, operations=KafkaOperations(settings, serde_for(settings)),
        metrics=ConsoleMetrics(registry), registry=registry, background=background,
        http=http, live_gate=feed.gate)
