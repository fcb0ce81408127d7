"""Identity stage wiring: ``internal.identity`` (batches from screening, and commands)
to the stage module streams/core/stages/identity.py, over the stage's store.

One partition today, because the identity graph needs one owner to stay consistent
(docs/partitioned-identity.md has the design that removes that cap). Each record is
one transaction (agents/owned.py): the graph's writes, the events forwarded in batches
to the profile partition of their canonical profile, each merge's ``merge-out`` to
the loser's partition, and the input offset commit together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from agents.activation import Activation
from agents.context import Worker
from agents.owned import Decoder, OwnedState, chunks, read_items
from agents.screening import header
from streams.core.dedup import DEDUP_PREFIX
from streams.core.identity_stage import expired_markers
from streams.core.routing import COMMAND_HEADER
from streams.core.stages import identity
from streams.core.stages.outputs import Outputs, Resolved
from tables.state import StateStore

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 5.0
SWEEP_CHUNK = 2000


class IdentityWiring:
    """The identity stage's wiring: its input topic's one partition to its store."""

    def __init__(self, w: Worker, activation: Activation, decoder: Decoder) -> None:
        self.w, self.decoder = w, decoder
        self.owned = OwnedState(w, activation, identity.STAGE,
                                w.identity_topic.get_topic_name(), [w.identity_state])
        self.sweeper = MarkerSweeper(w)

    def install(self) -> None:
        self.w.app.timer(interval=1.0)(self.owned.watch)
        self.w.app.agent(self.w.identity_topic, name="identity")(self.agent)

    async def agent(self, stream: Any) -> None:
        await self.owned.consume(stream, self.work)

    async def work(self, message: Any, store: StateStore, out: Outputs) -> None:
        name, now = header(message, COMMAND_HEADER), datetime.now(UTC)
        if name is not None:
            identity.command(store, store.scan, name, message.value or b"", now, out)
        else:
            await self.events(store, read_items(message, out, now), now, out)
        self.sweeper.maybe_sweep(store)

    async def events(self, store: StateStore, items: list[Any], now: datetime,
                     out: Outputs) -> None:
        window = self.w.settings.dedup_window
        for run in chunks(items):
            decoded = [(item, await self.decoder.decoded(item, now, identity.STAGE))
                       for item in run]
            sent = len(out.sends)
            identity.events(store, decoded, now, window, out)
            envelopes = {item.origin: env for item, env in decoded if not isinstance(env, str)}
            for send in out.sends[sent:]:  # this worker's profile stage is spared a decode
                if isinstance(send, Resolved) and send.item.origin in envelopes:
                    self.decoder.hand_over(send.item.origin, envelopes[send.item.origin])
            await asyncio.sleep(0)  # let heartbeats and the API run


class MarkerSweeper:
    """Deletes expired dedup markers a chunk at a time, between records (deletes are
    writes, which belong to a record's transaction: hence not in a timer)."""

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.cursor = DEDUP_PREFIX
        self.due = time.monotonic() + SWEEP_INTERVAL_S

    def maybe_sweep(self, store: StateStore) -> None:
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + SWEEP_INTERVAL_S
        items = store.scan(self.cursor, SWEEP_CHUNK, DEDUP_PREFIX)
        expired, cursor = expired_markers(items, datetime.now(UTC),
                                          self.w.settings.dedup_window, SWEEP_CHUNK)
        for key in expired:
            del store[key]
        self.cursor = cursor or DEDUP_PREFIX
        self.w.metrics.purged.inc(len(expired))
