"""The executor's asyncio side: commands in, jobs to lanes, outcomes staged for commit.

It never touches Kafka: the Kafka thread (streams/delivery/kafka.py) hands it the
commands it consumed and the ledgers of the partitions it was assigned, and commits
what it stages (:class:`Staging`): for one input partition, the ledger entries, outcome
records and dead letters, with the input offset they settle, in one transaction.

Follow one command: :meth:`Executor.accept` decodes it, routes it to its destinations
(``routed``), asks the partition's ledger whether each delivery should start
(``admit``: not if delivered, under way or waiting), writes its request body, and
queues a :class:`Job` per destination on that destination's lane. The lane's answer
comes back to :meth:`Executor.on_answer`; the answers of a few milliseconds are
:func:`~streams.delivery.attempt.settle`\\ d together and their records staged per
partition (streams/delivery/records.py); a retry is scheduled on the event loop (and is
in the ledger, so a crash does not lose it).

Why in batches: work done once per request, amid everything else, runs slower than the
same work in a loop (its code and data are no longer in the CPU's caches): measured in
the executor, an outcome's Avro encoding took about twice its time in a loop. So
commands are decoded and their bodies written per consumed batch, and answers settled
(their outcomes encoded, staged) per batch too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.activation.definitions import DefinitionSet
from streams.core.deadletter import DECODE_ERROR, PROCESSING_ERROR, SourceRecord, dead_letter
from streams.delivery.attempt import Answer, Job, Settlement, closed, parked, settle
from streams.delivery.breaker import Breaker
from streams.delivery.destinations import ERASE_PROFILE, Destination, Router
from streams.delivery.lanes import Lane
from streams.delivery.ledger import Entry, Ledger, ledger_key, split_key
from streams.delivery.metrics import DeliveryMetrics, result_class
from streams.delivery.policy import RetryPolicy
from streams.delivery.records import DESTINATION_HEADER, STAGE, Batch, settlement_records
from streams.delivery.signing import body_or_none
from streams.delivery.types import Codec, Incoming, Owned, Staging, Topics, Unbound
from streams.errors import ConfigError, DecodeError, RegistryError
from streams.settings import Settings

log = logging.getLogger(__name__)
RETRY_S = 1.0  # a command waiting for the registry is tried again after this
# Answers are settled together, this long after the first of them: batches of a few
# milliseconds (tens of answers, not the ~6 of one loop pass) took 6% less CPU per action.
# An outcome keeps its answer's time, and the commit comes every 200 ms anyway.
SETTLE_EVERY_S = 0.005
REDRIVE_HEADER = "x-activation-redrive-count"


class Executor:
    def __init__(self, settings: Settings, definitions: Callable[[], DefinitionSet | None],
                 disabled: Callable[[str], bool], codec: Codec, topics: Topics,
                 metrics: DeliveryMetrics) -> None:
        self._definitions, self._disabled = definitions, disabled
        self._codec, self._topics, self.metrics = codec, topics, metrics
        self._staging: Staging = Unbound()
        self._secrets = {k: v.get_secret_value() for k, v in settings.delivery_secrets.items()}
        self._urls = settings.delivery_url_overrides
        self.policy = RetryPolicy(settings.delivery_retry_schedule,
                                  settings.delivery_retry_jitter)
        self._breaker = (settings.delivery_breaker_failures,
                         settings.delivery_breaker_cooldown.total_seconds())
        self._window = settings.delivery_dedup_window
        self._horizon = sum(settings.delivery_retry_schedule, timedelta(0))
        self.owned: dict[tuple[str, int], Owned] = {}
        self.lanes: dict[str, Lane] = {}
        self._breakers: dict[str, Breaker] = {}
        self._router = Router()
        self._resolved_for: DefinitionSet | None = None
        self._resolved: dict[str, Destination | None] = {}
        self._generation = 0
        self.waiting = 0
        # Read by the Kafka thread for back-pressure; refreshed on the loop (never iterate
        # the loop's dicts from that thread). Waiting retries do not count: a destination
        # that is down must not stop the commands of the others.
        self.queued_snapshot = 0
        # (action topic, destination, profile) erased here: their waiting retries close
        self._erased: set[tuple[str, str, str]] = set()
        self._handed = 0  # records handed over by the Kafka thread, not yet accepted
        self._answers: list[tuple[Job, Answer, datetime]] = []  # to settle together
        self._handed_lock = threading.Lock()

    def bind(self, staging: Staging) -> None:
        """Where staged records go (the Kafka side, built after the executor)."""
        self._staging = staging

    # --- partitions --------------------------------------------------------------

    def assigned(self, topic: str, partition: int, ledger: Ledger) -> None:
        self._generation += 1
        self.owned[(topic, partition)] = Owned(self._generation, ledger)
        for key, entry in ledger.waiting():
            self._resume(topic, partition, key, entry)

    def revoked(self, topic: str, partition: int) -> None:
        """Jobs of the partition still queued, running or waiting are dropped as they
        come up (their generation is gone): the new owner has them from the ledger."""
        self.owned.pop((topic, partition), None)

    def pending(self) -> int:
        """Jobs queued for a lane and records not yet taken from the Kafka thread (which
        pauses reading above the bound)."""
        with self._handed_lock:
            return self.queued_snapshot + self._handed

    def handed_over(self, records: int) -> None:
        with self._handed_lock:
            self._handed += records

    def refresh(self, now: datetime) -> None:
        """On the loop, every half second: the back-pressure snapshot, and ledger entries
        older than the dedup window forgotten (the topic's retention drops them too)."""
        self.queued_snapshot = sum(lane.queue.qsize() + lane.busy
                                   for lane in self.lanes.values())
        for owned in self.owned.values():
            owned.ledger.prune(now - self._window)

    def current(self, job: Job) -> bool:
        """Is ``job`` still this process's (its partition not revoked meanwhile)?"""
        owned = self.owned.get((job.topic, job.partition))
        return owned is not None and owned.generation == job.generation

    # --- commands in --------------------------------------------------------------

    def accept(self, messages: list[Incoming]) -> None:
        with self._handed_lock:
            self._handed = max(0, self._handed - len(messages))
        now = datetime.now(UTC)
        definitions = self._definitions()  # once a batch: a lock, shared with its follower
        for msg in messages:
            owned = self.owned.get((msg.topic, msg.partition))
            if owned is not None:  # else revoked since it was read: the new owner has it
                self._accept_safely(owned, msg, now, definitions)

    def _accept_safely(self, owned: Owned, msg: Incoming, now: datetime,
                       definitions: DefinitionSet | None) -> None:
        """A command that cannot be handled now (the registry unreachable) holds its
        offset open and is tried again in a second; one that never can (a bug, a bad
        header) is dead-lettered: neither is ever committed past unhandled."""
        try:
            self._accept(owned, msg, now, definitions)
        except RegistryError as exc:
            log.warning("command %s[%d]@%d waits for the registry: %s", msg.topic,
                        msg.partition, msg.offset, exc)
            owned.offsets.add(msg.offset, 1)
            asyncio.get_running_loop().call_later(RETRY_S, self._again, msg, owned.generation)
        except Exception as exc:
            log.exception("command %s[%d]@%d dead-lettered", msg.topic, msg.partition,
                          msg.offset)
            owned.offsets.add(msg.offset, 0)
            self._dead_letter_poison(owned, msg, exc, now, PROCESSING_ERROR)

    def _again(self, msg: Incoming, generation: int) -> None:
        owned = self.owned.get((msg.topic, msg.partition))
        if owned is None or owned.generation != generation:
            return
        owned.offsets.settle(msg.offset)  # its hold; _accept_safely sets what it needs
        self._accept_safely(owned, msg, datetime.now(UTC), self._definitions())

    def _accept(self, owned: Owned, msg: Incoming, now: datetime,
                definitions: DefinitionSet | None) -> None:
        try:
            command = self._codec.command(msg.value or b"")
        except DecodeError as exc:
            owned.offsets.add(msg.offset, 0)
            self._dead_letter_poison(owned, msg, exc, now)
            return
        only = msg.headers.get(DESTINATION_HEADER)
        targets = self._targets(command, only, definitions)
        if not targets:
            self.metrics.of(self.metrics.unrouted, command["channel"]).inc()
        jobs = [self._job(owned, msg, command, d.id) for d in targets]
        admitted = [j for j in jobs if owned.ledger.admit(j.key, redrive=only is not None)]
        owned.offsets.add(msg.offset, len(admitted))
        if admitted:  # one body for every destination, written while the codecs are hot
            payload = body_or_none(command)
            for job in admitted:
                job.body = payload
        else:  # nothing to do (or done before): the offset may move on
            self._staging.stage(msg.topic, msg.partition, [], owned.offsets.committable())
        if command["action_type"] == ERASE_PROFILE:  # no older retry of theirs may follow
            self._erased.update((msg.topic, d.id, command["profile_id"]) for d in targets)
        for job in admitted:
            owned.ledger.start(job.key)
            self._dispatch(job, now, definitions)

    def _targets(self, command: dict[str, Any], only: bytes | None,
                 definitions: DefinitionSet | None) -> list[Destination]:
        found = [] if definitions is None else self._router(
            definitions, definitions.destinations, command)
        return found if only is None else [d for d in found if d.id == only.decode()]

    def _job(self, owned: Owned, msg: Incoming, command: dict[str, Any],
             destination: str) -> Job:
        redrives = int(msg.headers.get(REDRIVE_HEADER, b"0") or 0)
        return Job(msg.topic, msg.partition, msg.offset,
                   ledger_key(msg.topic, destination, command["action_id"]), destination,
                   command, msg.key, msg.value or b"", generation=owned.generation,
                   redrives=redrives)

    def _dispatch(self, job: Job, now: datetime, definitions: DefinitionSet | None) -> None:
        destination = self._destination(job.destination, definitions)
        if destination is None or self._disabled(job.destination):
            why = "destination disabled" if destination else "destination no longer defined"
            self._settle(job, Answer(None, why, attempted=False), now, disabled=True)
            return
        try:
            lane = self._lane(destination)
        except (KeyError, ConfigError) as exc:  # a secret it names is not in settings
            why = f"destination misconfigured: {type(exc).__name__} {exc}"
            self._settle(job, Answer(None, why, attempted=False), now, disabled=True)
            return
        lane.queue.put_nowait(job)

    def _destination(self, destination_id: str,
                     definitions: DefinitionSet | None) -> Destination | None:
        if definitions is not self._resolved_for:  # remembered per set: the lane lookup
            self._resolved_for, self._resolved = definitions, {}  # is then by identity
        if destination_id in self._resolved:
            return self._resolved[destination_id]
        found = None if definitions is None else definitions.destinations.get(destination_id)
        url = self._urls.get(destination_id)
        if found is not None and url is not None and str(found.url) != url:
            found = found.model_copy(update={"url": url})  # equal every time: lane kept
        self._resolved[destination_id] = found
        return found

    def _lane(self, destination: Destination) -> Lane:
        lane = self.lanes.get(destination.id)
        if lane is not None and (lane.destination is destination
                                 or lane.destination == destination):
            return lane
        breaker = self._breakers.setdefault(destination.id, Breaker(*self._breaker))
        new = Lane(destination, self._secrets, breaker, self.on_answer, self.current)
        new.start()
        if lane is not None:  # the definition changed: the old lane hands over and ends
            lane.hand_over(new)
        self.lanes[destination.id] = new
        return new

    # --- answers ------------------------------------------------------------------

    def on_answer(self, job: Job, answer: Answer, now: datetime) -> None:
        """Settled with the other answers of the next few milliseconds."""
        self._answers.append((job, answer, now))
        if len(self._answers) == 1:
            asyncio.get_running_loop().call_later(SETTLE_EVERY_S, self._settle_answers)

    def _settle_answers(self) -> None:
        answers, self._answers = self._answers, []
        batch = Batch()
        m = self.metrics
        for job, answer, now in answers:
            try:
                if answer.attempted:
                    m.of(m.attempts, job.destination,
                         result_class(answer.status, answer.error)).inc()
                    m.of(m.request_seconds, job.destination).observe(answer.elapsed_s)
                self._settle(job, answer, now, batch=batch)
            except Exception:  # a bug must not lose the others; this job stays unsettled
                log.exception("delivery to %s failed unexpectedly", job.destination)
        batch.stage(self._staging, self.owned)  # in this callback: no revoke in between

    def _settle(self, job: Job, answer: Answer, now: datetime, disabled: bool = False,
                erased: bool = False, batch: Batch | None = None) -> None:
        """Records ``answer``; its records go to ``batch`` if given, else straight to
        staging."""
        owned = self.owned.get((job.topic, job.partition))
        if owned is None or owned.generation != job.generation:
            return  # revoked meanwhile: not ours to record
        if not answer.attempted and not (disabled or erased) and job.offset is None \
                and (job.first_at is None or now - job.first_at < self._horizon):
            # Refused by an open circuit, and already in the ledger as retrying: wait in
            # memory, writing nothing (a record per refusal flooded the topics).
            self._wait(job, parked(now, answer))
            return
        result = (closed(job, answer, now) if erased else
                  settle(job, answer, self.policy, now, disabled=disabled,
                         horizon=self._horizon))
        # before any state changes: may raise
        records = settlement_records(self._topics, self._codec, job, result, now)
        owned.ledger.record(job.key, result.entry)
        if job.offset is not None:
            owned.offsets.settle(job.offset)
        if batch is not None:
            batch.add(job.topic, job.partition, records)
        else:
            self._staging.stage(job.topic, job.partition, records,
                                owned.offsets.committable())
        self._count(job, result, now)
        if result.entry.status == "retrying":
            self._wait(job.next(result.entry), result.entry)

    def _count(self, job: Job, result: Settlement, now: datetime) -> None:
        status = result.entry.status
        m = self.metrics
        m.of(m.outcomes, job.destination, status).inc()
        if result.dead_reason is not None:
            m.dead_letters.labels(result.dead_reason).inc()
        created = job.command.get("created_at")
        if status == "delivered" and isinstance(created, datetime):
            m.of(m.latency_seconds, job.destination).observe(
                max(0.0, (now - created).total_seconds()))

    # --- retries ------------------------------------------------------------------

    def _wait(self, job: Job, entry: Entry) -> None:
        delay = 0.0 if entry.due is None else (entry.due - datetime.now(UTC)).total_seconds()
        self.waiting += 1
        asyncio.get_running_loop().call_later(max(0.0, delay), self._due, job)

    def _due(self, job: Job) -> None:
        self.waiting -= 1
        owned = self.owned.get((job.topic, job.partition))
        if owned is None or owned.generation != job.generation:
            return
        if (job.topic, job.destination, job.command["profile_id"]) in self._erased \
                and job.command["action_type"] != ERASE_PROFILE:
            self._settle(job, Answer(None, "the profile was erased", attempted=False),
                         datetime.now(UTC), erased=True)
            return
        self._dispatch(job, datetime.now(UTC), self._definitions())

    def _resume(self, topic: str, partition: int, key: str, entry: Entry,
                generation: int | None = None) -> None:
        """A retry read back from the ledger (after a restart or a rebalance); while the
        registry is unreachable it is tried again, an undecodable one is dead-lettered."""
        owned = self.owned.get((topic, partition))
        if owned is None or generation not in (None, owned.generation):
            return
        owned.ledger.start(key)  # whatever happens below, no copy of it starts meanwhile
        try:
            command = self._codec.command(entry.value or b"")
        except RegistryError:
            asyncio.get_running_loop().call_later(
                RETRY_S, self._resume, topic, partition, key, entry, owned.generation)
            return
        except DecodeError as exc:
            self._bury(owned, topic, partition, key, entry, exc)
            return
        job = Job(topic, partition, None, key, split_key(key)[1], command, entry.key,
                  entry.value or b"", attempts=entry.attempts, first_at=entry.first_at,
                  generation=owned.generation)
        self._wait(job, entry)

    def _bury(self, owned: Owned, topic: str, partition: int, key: str, entry: Entry,
              exc: Exception) -> None:
        """A waiting retry whose command no longer decodes: dead-lettered, its entry
        closed (so it is not resumed, and a re-drive can start it again)."""
        now = datetime.now(UTC)
        closed = Entry("dead_lettered", entry.attempts, entry.first_at, now)
        owned.ledger.record(key, closed)
        source = SourceRecord(topic, partition, -1, entry.key, entry.value,
                              [(DESTINATION_HEADER, split_key(key)[1].encode())])
        letter = dead_letter(source, DECODE_ERROR, f"{type(exc).__name__}: {exc}", STAGE, now)
        self._staging.stage(topic, partition, [
            (self._topics.ledger, key.encode(), closed.encode(), partition, None),
            (self._topics.dead_letters, entry.key, self._codec.dead_letter(letter), None, None)],
            None)

    def _dead_letter_poison(self, owned: Owned, msg: Incoming, exc: Exception,
                            now: datetime, code: str = DECODE_ERROR) -> None:
        source = SourceRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                              list(msg.headers.items()))
        letter = dead_letter(source, code, f"{type(exc).__name__}: {exc}", STAGE, now)
        self.metrics.dead_letters.labels(code).inc()
        self._staging.stage(msg.topic, msg.partition, [(
            self._topics.dead_letters, msg.key, self._codec.dead_letter(letter), None, None)],
            owned.offsets.committable())

    async def close(self) -> None:
        await asyncio.gather(*(lane.close() for lane in self.lanes.values()))
