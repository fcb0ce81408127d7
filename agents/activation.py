"""Activation's runtime wiring: definitions in force, the timer ticker, and publishing.

The decisions themselves are made in the profile stage (agents/profiles.py calls
:mod:`streams.activation.runtime`), because they need the profile's owner and its
table. This module gives it what it needs:

- the definitions in force, followed from the compacted definitions topic (every
  worker reads all of it, so all agree on the version without a restart);
- a ticker: every ``timer_interval`` the leader worker sends a ``tick`` command onto
  the identity stage's topic, which fans it out to every partition of the profile
  stage, so due per-profile timers are handled by the profile's owner, in order with
  its events (with ``activation_clock=manual`` only explicit ticks move
  time, which is how tests and demos control it);
- :func:`emit`, which encodes an emission's action commands and audience changes
  (Avro, Confluent wire format) for the profile stage to send in the transaction of
  the record that caused them, and :func:`count`, for once it committed. Ids are
  deterministic, so a consumer reading uncommitted data can still deduplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter as CountOf
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import Counter

from agents.context import Worker
from agents.metrics import ActivationMetrics, Tally
from streams.activation.definitions import DefinitionSet
from streams.activation.distribution import DefinitionsFollower
from streams.activation.runtime import Emission, Store, load_state
from streams.core.routing import COMMAND_HEADER, TICK
from streams.errors import RegistryError
from streams.records import Envelope
from streams.serde import Encoder
from streams.topics import (
    ACTION_COMMAND,
    AUDIENCE_CHANGE_RECORD,
    AUDIENCE_CHANGES,
    action_topic,
)

STAGE = "stream.activation"
log = logging.getLogger(__name__)
# (topic, key, value): the profile stage sends within its transaction (tables/state.py).
Send = Callable[[str, bytes, bytes], None]


class Activation:
    """The definitions in force (followed from their topic) and the encoding and
    counting of what activation decided, for one worker."""

    def __init__(self, w: Worker) -> None:
        self.w, self.metrics = w, w.activation_metrics
        self.changes_topic = w.topic(AUDIENCE_CHANGES)
        self.follower = DefinitionsFollower(w.settings)  # logs each change of version
        self._encoders: dict[str, Encoder] = {}

    def install(self) -> None:
        """Follow the definitions from the start; only the leader ticks (one tick per
        interval however many workers run)."""
        self.w.app.task(self._start_follower)
        interval = self.w.settings.timer_interval.total_seconds()
        self.w.app.timer(interval=interval, on_leader=True)(self.ticker)

    async def _start_follower(self) -> None:
        self.follower.start()

    def topic_for(self, channel: str) -> str:
        """Where a channel's commands go: its topic as the definitions in force declare it
        (channels are configuration: streams/activation/channels.py), else as the stable
        ones of a staged rollout do, else ``actions.<channel>``."""
        for published in (self.follower.current(), self.follower.stable()):
            declared = None if published is None \
                else published.definitions.all_channels.get(channel)
            if declared is not None:
                return self.w.topic(declared.topic_name)
        return self.w.topic(action_topic(channel))

    def definitions_in_force(self) -> DefinitionSet | None:
        current = self.follower.current()
        return None if current is None else current.definitions

    def definitions_for(self, store: Store, profile_id: str) -> DefinitionSet | None:
        """The definitions deciding for ``profile_id``: during a staged rollout the
        candidate for its cohort, the stable version for the others
        (streams/activation/rollout.py)."""
        current = self.follower.current()
        if current is None or current.rollout is None:
            return None if current is None else current.definitions
        memberships: list[str] = []
        if current.rollout.audience is not None:  # its membership as last recorded
            memberships = load_state(store, profile_id)[0].memberships
        return self.follower.for_profile(profile_id, memberships)

    async def wait_for_definitions(self) -> None:
        """The profile stage starts deciding only once the definitions topic has been
        read, so no worker acts on an older version than the one published."""
        while not self.follower.loaded.is_set():
            await asyncio.sleep(0.1)

    async def _encoder(self, topic: str, record: str) -> Encoder:
        """Resolved once per topic (a registry lookup; bootstrap registers the schemas).
        While the registry is unreachable the partition waits: nothing is dropped."""
        attempt = 0
        while topic not in self._encoders:
            try:
                self._encoders[topic] = self.w.serde.encoder(f"{topic}-value", record)
            except RegistryError as exc:
                log.warning("registry unavailable for %s, retrying: %s", topic, exc)
                attempt = await self.w.retrying(STAGE, attempt)
        return self._encoders[topic]

    def count(self, emissions: Iterable[Emission]) -> None:
        """Count a committed transaction's emissions: each labelled counter once, by
        its total (:func:`tally`), not once per change or decision (a counter's ``inc``
        takes its lock: several per event were 2% of a worker's CPU with activation)."""
        self.metrics.add(tally(self.metrics, emissions))

    def observe_latency(self, emission: Emission, cause: Envelope) -> None:
        """Event time -> decision, gateway acceptance -> command (wall clock: what an
        operator waits for, whatever activation's clock says)."""
        now = datetime.now(UTC)
        if emission.decisions:
            self.metrics.event_to_decision.observe(
                max(0.0, (now - cause.event_time).total_seconds()))
        if emission.commands:
            self.metrics.accepted_to_command.observe(
                max(0.0, (now - cause.received_time).total_seconds()))

    async def emit(self, emissions: Iterable[Emission], send: Send) -> None:
        """Encode the action commands and audience changes of ``emissions``, ``send`` them."""
        for emission in emissions:
            key = emission.profile_id.encode()
            for command in emission.commands:
                topic = self.topic_for(command["channel"])
                send(topic, key, (await self._encoder(topic, ACTION_COMMAND))(command))
            for change in emission.changes:
                encode = await self._encoder(self.changes_topic, AUDIENCE_CHANGE_RECORD)
                send(self.changes_topic, key, encode(change))

    async def ticker(self) -> None:
        # No definitions, nothing a timer could do: no ticks (they would only add lag).
        if self.w.settings.activation_clock == "system" \
                and self.definitions_in_force() is not None:
            await self.w.identity_topic.send(key=TICK, value=tick_value(datetime.now(UTC)),
                                             headers={COMMAND_HEADER: TICK}, force=True)


def tally(metrics: ActivationMetrics, emissions: Iterable[Emission]) -> Tally:
    """What ``emissions`` add to activation's counters: (counter, labels) -> amount."""
    counts: CountOf[tuple[Counter, tuple[str, ...]]] = CountOf()
    for emission in emissions:
        for change in emission.changes:
            counts[metrics.audience_changes, (change["audience_id"], change["change"])] += 1
        for journey in emission.enrolled:
            counts[metrics.enrollments, (journey,)] += 1
        for decision in emission.decisions:
            outcome = decision["outcome"]
            counts[metrics.actions, (decision["channel"], outcome)] += 1
            if decision.get("journey_id"):
                counts[metrics.step_decisions, (decision["journey_id"],
                                                decision["step_id"] or "", outcome)] += 1
            if outcome == "withheld":
                counts[metrics.suppressions, (decision["rule"],)] += 1
        for a in emission.assignments:
            counts[metrics.assignments, (a["journey_id"], a["step_id"], a["variant"])] += 1
        for write in emission.writes:
            counts[metrics.writes, (write["op"],)] += 1
    return counts


def tick_value(now: datetime) -> bytes:
    return json.dumps({"now": now.astimezone(UTC).isoformat()}).encode()
