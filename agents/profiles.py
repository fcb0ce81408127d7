"""Profile stage wiring: ``internal.profiles`` (partitioned by canonical profile id, so
the workers share the profiles, one store per partition: tables/state.py) to the stage
module streams/core/stages/profiles.py.

The identity stage (agents/identity.py) has already deduplicated and resolved every
event. The module applies events in event-time order and runs activation on each
(audiences, journeys, governance; the definitions come from agents/activation.py);
commands (streams/core/routing.py) fire due timers and carry merges and their undo
across partitions. A record that still fails is dead-lettered with reason
``processing_error`` so the partition keeps flowing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from agents.activation import Activation
from agents.context import Worker
from agents.owned import Decoder, OwnedState, chunks, read_items
from agents.screening import header
from streams.core.batch import BatchItem, position
from streams.core.pipeline import StageConfig
from streams.core.routing import COMMAND_HEADER
from streams.core.stages.outputs import Outputs
from streams.core.stages.profiles import STAGE, ProfileStage
from streams.records import Envelope
from streams.topics import ACTION_CHANNELS
from tables.state import StateStore


class ProfileWiring:
    """The profile stage's wiring: each partition of its input topic to its store."""

    def __init__(self, w: Worker, activation: Activation, decoder: Decoder) -> None:
        self.w, self.activation, self.decoder = w, activation, decoder
        settings = w.settings
        config = StageConfig(settings.dedup_window, settings.ordering_window,
                             settings.profile_timeline_limit)
        self.stage = ProfileStage(config, w.partitions, activation,
                                  manual=settings.activation_clock == "manual",
                                  timer_batch=settings.timer_batch, channels=ACTION_CHANNELS,
                                  identity_slots=w.slots)
        self.owned = OwnedState(w, activation, STAGE, w.profiles_topic.get_topic_name(),
                                w.profile_states)

    def install(self) -> None:
        self.w.app.timer(interval=1.0)(self.owned.watch)
        self.w.app.agent(self.w.profiles_topic, name="profiles")(self.agent)

    async def agent(self, stream: Any) -> None:
        await self.activation.wait_for_definitions()
        await self.owned.consume(stream, self.work)

    async def work(self, message: Any, store: StateStore, out: Outputs) -> None:
        name, wall = header(message, COMMAND_HEADER), datetime.now(UTC)
        if name is not None:
            self.stage.command(store, message.partition, name, message.value or b"",
                               position(message.offset), wall, out)
            return
        index = 0
        for run in chunks(read_items(message, out, wall)):
            decoded: list[tuple[BatchItem, Envelope | str, int]] = []
            for item in run:
                envelope = await self.decoder.decoded(item, wall, STAGE)
                decoded.append((item, envelope, position(message.offset, index)))
                index += 1
            self.stage.events(store, message.partition, decoded, wall, out)
            await asyncio.sleep(0)  # let heartbeats and the API run
