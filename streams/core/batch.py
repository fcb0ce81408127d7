"""Screened events travel to the profile stage in batches: one record, many events.

Why: Faust spends a stream step (hundreds of microseconds of asyncio and bookkeeping)
on every record it delivers, more than the profile stage's own work on an event. The
screening stage therefore packs the events it passed into one record of the internal
profile topic, and the profile agent pays that step once per batch.

The framing is internal to the workers (the topic is ``internal.identity``, never
read by anyone else), so it is a plain length-prefixed layout with a version byte
rather than a registered Avro type; each event inside keeps its original
Confluent-framed Avro bytes, exactly as the producer wrote them, so a dead letter
raised in the profile stage still carries the original record::

    version (1 byte, 1) | count (u32)
    per event: origin (u16 length + utf-8) | key (i32 length, -1 = null) | value (u32 + bytes)

Version 2 (the identity stage's forwards to the profile stage) adds, after the origin,
the canonical profile id the event was resolved to (u16 length + utf-8). Version 3 adds,
after the value, the envelope screening decoded (u32 length + streams/core/carried.py's
form; 0 = none), so no later stage decodes the event again; its profile id is always
present ("" before resolution). A stage reads an item's envelope bytes as they are and
decodes them when it needs the envelope (agents/owned.py ``Decoder``): bytes that do not
read back cost that one event an Avro decode, not its whole batch, and the identity stage
passes a waiting event's bytes on without decoding them. Screening and the identity
stage write version 3;
versions 1 and 2 are still read (records written before an upgrade). An older worker
cannot read version 3: stop every worker of a deployment before upgrading to it.

An event's *position* in the profile stage is ``offset * BATCH_SPAN + index``: unique,
increasing in processing order, the same when a batch record is read again after a
restart (which is what tells a replay from a new event), and equal to ``offset * BATCH_SPAN``
for a record that is not a batch (commands, and single events written by older workers).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from streams.core.carried import encode as encode_carried
from streams.records import Envelope

BATCH_HEADER = "x-activation-batch"  # present (value: the version) on batch records
VERSION = 1
VERSION_RESOLVED = 2  # items carry their canonical profile id
VERSION_CARRIED = 3  # items carry their profile id (maybe "") and decoded envelope
_READS = (VERSION, VERSION_RESOLVED, VERSION_CARRIED)
BATCH_SPAN = 10_000  # positions per record; a batch holds at most this many events
MAX_BATCH_EVENTS = 2_000
# Below the topic's max.message.bytes (streams/topics.py) with room for the framing, so
# that the largest record a producer could write to the ingestion topic still fits alone.
MAX_BATCH_BYTES = 1_000_000

_HEAD = struct.Struct(">BI")
_U16, _I32, _U32 = struct.Struct(">H"), struct.Struct(">i"), struct.Struct(">I")


class BatchFormatError(ValueError):
    """A batch record that cannot be read (truncated, or a version this worker lacks)."""


class BatchItem(NamedTuple):
    """One screened event: the ingestion record it came from and its bytes as read.

    A named tuple rather than a frozen dataclass: every stage after screening makes one
    per event it reads or sends on, and a tuple is built in C, where the dataclass's
    ``__init__`` set each field through ``object.__setattr__`` (2% of a core worker's
    CPU, py-spy)."""

    origin: str  # topic:partition:offset of the ingestion record
    key: bytes | None
    value: bytes
    profile: str = ""  # the canonical profile id (version 2), "" before identity resolution
    # The envelope screening decoded, as an object (in the worker that decoded it) ...
    envelope: Envelope | None = None
    # ... or as the carried bytes read from a batch (version 3), decoded where needed.
    # Neither: decode ``value`` (records from before version 3).
    carried: bytes = b""

    @property
    def size(self) -> int:
        # The carried envelope is somewhat larger than the Avro value it was decoded
        # from (field names are not written, but numbers and times take more room).
        carried_size = len(self.carried) if self.carried else \
            0 if self.envelope is None else len(self.value) * 3 // 2
        return (16 + len(self.origin) + len(self.profile) + len(self.key or b"")
                + len(self.value) + carried_size)

    def carried_form(self) -> bytes:
        """The envelope's carried bytes (b"": none): the decoded envelope's (the bytes
        it was read from, unless they did not read back and it came from Avro), else
        those read."""
        return self.carried if self.envelope is None else encode_carried(self.envelope)


def position(offset: int, index: int = 0) -> int:
    return offset * BATCH_SPAN + index


def encode_batch(items: Iterable[BatchItem]) -> bytes:
    items = list(items)
    if len(items) > BATCH_SPAN:
        raise ValueError(f"a batch holds at most {BATCH_SPAN} events, got {len(items)}")
    version = _version_for(items)
    parts = [_HEAD.pack(version, len(items))]
    for item in items:
        origin = item.origin.encode()
        parts += [_U16.pack(len(origin)), origin]
        if version != VERSION:
            profile = item.profile.encode()
            parts += [_U16.pack(len(profile)), profile]
        parts += [_I32.pack(-1)] if item.key is None else [_I32.pack(len(item.key)), item.key]
        parts += [_U32.pack(len(item.value)), item.value]
        if version == VERSION_CARRIED:
            envelope = item.carried_form()
            parts += [_U32.pack(len(envelope)), envelope]
    return b"".join(parts)


def _version_for(items: list[BatchItem]) -> int:
    if any(item.envelope is not None or item.carried for item in items):
        return VERSION_CARRIED
    return VERSION_RESOLVED if any(item.profile for item in items) else VERSION


def decode_batch(data: bytes) -> list[BatchItem]:
    try:
        version, count = _HEAD.unpack_from(data, 0)
        if version not in _READS:
            raise BatchFormatError(f"batch format version {version}; this worker reads "
                                   f"{_READS} (upgrade the worker)")
        items, pos = _decode_items(data, version, count)
    except (struct.error, UnicodeDecodeError) as exc:
        raise BatchFormatError(f"unreadable batch record: {exc}") from exc
    if pos != len(data):
        raise BatchFormatError(f"{len(data) - pos} unexpected bytes after the batch")
    return items


def _decode_items(data: bytes, version: int, count: int) -> tuple[list[BatchItem], int]:
    """The items and the position after them. Once per event in each stage after
    screening: the unpackers are bound once, not looked up per field."""
    u16, i32, u32 = _U16.unpack_from, _I32.unpack_from, _U32.unpack_from
    pos, items, profile, envelope = _HEAD.size, [], "", b""
    for _ in range(count):
        (n,) = u16(data, pos)
        origin = data[pos + 2:pos + 2 + n].decode()
        pos += 2 + n
        if version != VERSION:
            (n,) = u16(data, pos)
            profile = data[pos + 2:pos + 2 + n].decode()
            pos += 2 + n
        (n,) = i32(data, pos)
        pos += 4
        key = None if n < 0 else data[pos:pos + n]
        pos += max(n, 0)
        (n,) = u32(data, pos)
        value = data[pos + 4:pos + 4 + n]
        if len(value) != n:
            raise BatchFormatError("batch record truncated")
        pos += 4 + n
        if version == VERSION_CARRIED:
            (n,) = u32(data, pos)
            envelope = data[pos + 4:pos + 4 + n]
            if len(envelope) != n:
                raise BatchFormatError("batch record truncated")
            pos += 4 + n
        items.append(BatchItem(origin, key, value, profile, None, envelope))
    return items, pos


def chunked(items: Iterable[BatchItem], max_events: int = MAX_BATCH_EVENTS,
            max_bytes: int = MAX_BATCH_BYTES) -> Iterator[list[BatchItem]]:
    """Consecutive runs of ``items`` (order kept) within both limits; an event larger
    than ``max_bytes`` on its own travels alone."""
    run: list[BatchItem] = []
    size = 0
    for item in items:
        if run and (len(run) >= max_events or size + item.size > max_bytes):
            yield run
            run, size = [], 0
        run.append(item)
        size += item.size
    if run:
        yield run


def parse_origin(origin: str) -> tuple[str, int, int]:
    """(topic, partition, offset) of an origin string; topics may contain ':' only
    before the last two fields."""
    topic, partition, offset = origin.rsplit(":", 2)
    return topic, int(partition), int(offset)
