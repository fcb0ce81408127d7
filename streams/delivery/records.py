"""The Kafka records a settled delivery writes, and the batch they are staged in.

One settlement writes its ledger entry (``delivery.ledger``, the partition of the input
partition), its ``DeliveryOutcome`` (``delivery.outcomes``), the outcome's timeline note
(a ``delivery-note`` command to the profile's partition of ``internal.profiles``) and,
when it gives up, a dead letter; a 410 also disables the destination
(``delivery.control``). :func:`settlement_records` builds them.

The executor settles the answers of a few milliseconds together and stages them with a
:class:`Batch`: one staging call per input partition, with the offset they settle,
instead of one (a lock, the offset heap) per answer.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from streams.core.deadletter import SourceRecord, dead_letter
from streams.core.routing import COMMAND_HEADER, DELIVERY_NOTE, partition_of
from streams.delivery.attempt import Job, Settlement, dead_reason_text
from streams.delivery.control import control_value
from streams.delivery.signing import compact
from streams.delivery.types import Codec, Owned, Record, Staging, Topics

STAGE = "delivery"
DESTINATION_HEADER = "x-delivery-destination"  # a re-drive: this destination only
NOTE_HEADERS: list[tuple[str, str | bytes | None]] = [(COMMAND_HEADER, DELIVERY_NOTE)]


def settlement_records(topics: Topics, codec: Codec, job: Job, result: Settlement,
                       now: datetime) -> list[Record]:
    """What ``result`` writes (encodes: may raise before anything is recorded)."""
    t = topics
    pid = str(job.command["profile_id"]).encode()
    records: list[Record] = [  # JSON compacted: staged until the commit (signing.compact)
        (t.ledger, job.key.encode(), compact(result.entry.encode()), job.partition, None),
        (t.outcomes, pid, codec.outcome(result.outcome), None, None),
        (t.profiles, pid, compact(orjson.dumps(result.outcome)), partition_of(
            job.command["profile_id"], t.profile_partitions), NOTE_HEADERS)]
    if result.dead_reason is not None:
        source = SourceRecord(job.topic, job.partition, -1 if job.offset is None
                              else job.offset, job.record_key, job.record_value,
                              [(DESTINATION_HEADER, job.destination.encode())])
        letter = dead_letter(source, result.dead_reason, dead_reason_text(result), STAGE,
                             now, job.redrives)
        records.append((t.dead_letters, job.destination.encode(),
                        codec.dead_letter(letter), None, None))
    if result.disable:
        records.append((t.control, job.destination.encode(), control_value(
            True, f"HTTP 410 for action {job.command['action_id']}", now), None, None))
    return records


class Batch:
    """Records of one settling batch, per input partition in the order they were
    settled (the order between partitions was the order answers happened to arrive in
    anyway)."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, int], list[Record]] = {}

    def add(self, topic: str, partition: int, records: list[Record]) -> None:
        found = self._by.get((topic, partition))
        if found is None:
            self._by[(topic, partition)] = records
        else:
            found.extend(records)

    def stage(self, staging: Staging, owned: dict[tuple[str, int], Owned]) -> None:
        """Each partition's records, with the offset they and all before settle. Called
        in the same loop callback as :meth:`add`: no revoke can come between."""
        for (topic, partition), records in self._by.items():
            mine = owned.get((topic, partition))
            staging.stage(topic, partition, records,
                          None if mine is None else mine.offsets.committable())
        self._by.clear()
