"""Publishing definitions to the compacted definitions topic, and following what is in force.

Every publication is one record keyed ``v<sequence>-<record id>`` (``v00000003-5f0c2a9e1b7d``;
records written before record ids existed are keyed ``v00000003``) on the one-partition
topic ``settings.topic(DEFINITIONS)``. Distinct keys mean compaction never removes a
publication, so the topic itself is the history of who published which version, when.
The value is JSON::

    {"sequence": 3, "version": "<content hash>", "published_by": "ana",
     "published_at": "2026-03-02T10:00:00+00:00", "snapshot": {<definitions.snapshot()>}}

The valid record with the highest sequence is in force. Readers re-validate every record
(``from_snapshot`` recomputes the version hash); one that does not decode is logged and
skipped, so a bad record can never replace the definitions in force.

Publishers read the topic to pick the next sequence. Two publishers racing can both write
the same sequence; the later record then wins, and ``choose_in_force`` applies that same
rule to readers that saw both. The random record id in the key keeps the two keys apart,
so compaction keeps both and the history loses neither.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Message, Producer

from streams.activation.approval import Proposal, is_proposal
from streams.activation.definitions import (
    DefinitionError,
    DefinitionSet,
    from_snapshot,
    load_definitions,
    snapshot,
)
from streams.activation.provision import provision_channels
from streams.activation.rollout import Rollout, for_profile
from streams.errors import BrokerError
from streams.follower import Follower, read_topic
from streams.settings import Settings
from streams.topics import DEFINITIONS, admin_client, declared_topics, ensure_topics

ACK_TIMEOUT_S = 15.0
_KEY_PREFIX = "v"
_FIELDS: dict[str, type] = {"sequence": int, "version": str, "published_by": str,
                            "published_at": str, "snapshot": dict}
log = logging.getLogger("streams.activation.distribution")


@dataclass(frozen=True)
class Published:
    """One publication of a definition set: which version, by whom, when, and its place."""

    sequence: int
    version: str
    published_by: str
    published_at: datetime
    definitions: DefinitionSet
    record_id: str = ""  # what keeps racing publications' keys apart ("" in old records)
    rollout: Rollout | None = None  # staged: for a cohort only (streams/activation/rollout.py)

    def __post_init__(self) -> None:
        if self.sequence < 1:
            raise ValueError(f"sequence must be 1 or more, got {self.sequence}")
        if self.version != self.definitions.version:
            raise ValueError(f"version {self.version!r} is not the definitions' version "
                             f"{self.definitions.version!r}")
        if self.published_at.tzinfo is None or self.published_at.utcoffset() is None:
            raise ValueError("published_at must be timezone-aware")
        # Stored in UTC so every reader prints the same instant the same way.
        object.__setattr__(self, "published_at", self.published_at.astimezone(UTC))


def record_key(sequence: int, record_id: str = "") -> bytes:
    return b"v%08d" % sequence + (f"-{record_id}".encode() if record_id else b"")


def encode_record(p: Published) -> tuple[bytes, bytes]:
    """(key, value) of a publication; the snapshot is embedded as a JSON object."""
    doc = {"sequence": p.sequence, "version": p.version, "published_by": p.published_by,
           "published_at": p.published_at.isoformat(),
           "snapshot": json.loads(snapshot(p.definitions))}
    if p.rollout is not None:  # absent otherwise: older workers read the record as before
        doc["rollout"] = p.rollout.to_dict()
    value = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return record_key(p.sequence, p.record_id), value


def _key_parts(key: bytes | None) -> tuple[int, str] | None:
    """(sequence, record id) of a key (``v00000003-5f0c`` -> (3, "5f0c"), ``v00000003`` ->
    (3, "")), or None if it is not one of ours."""
    text = (key or b"").decode("utf-8", errors="replace")
    digits, _, record_id = text.removeprefix(_KEY_PREFIX).partition("-")
    if text.startswith(_KEY_PREFIX) and digits.isascii() and digits.isdigit():
        return int(digits), record_id
    return None


def _key_sequence(key: bytes | None) -> int | None:
    parts = _key_parts(key)
    return None if parts is None else parts[0]


def _fields(value: bytes) -> dict[str, Any]:
    doc = json.loads(value)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    for name, kind in _FIELDS.items():
        if name not in doc:
            raise ValueError(f"missing field {name!r}")
        # bool is an int subclass; a true/false sequence is not a sequence.
        if not isinstance(doc[name], kind) or isinstance(doc[name], bool):
            raise ValueError(f"{name}: expected {kind.__name__}, got {type(doc[name]).__name__}")
    return doc


def _decode(key: bytes | None, value: bytes | None) -> Published:
    if value is None:
        raise ValueError("tombstone (no value)")
    doc = _fields(value)
    parts = _key_parts(key)
    if parts is None or parts[0] != doc["sequence"]:
        raise ValueError(f"sequence {doc['sequence']} does not match the key")
    published_at = datetime.fromisoformat(doc["published_at"])
    if published_at.tzinfo is None:
        raise ValueError(f"published_at: {doc['published_at']!r} has no UTC offset")
    definitions = from_snapshot(json.dumps(doc["snapshot"]).encode())
    rollout = None if doc.get("rollout") is None else Rollout.from_dict(doc["rollout"])
    return Published(doc["sequence"], doc["version"], doc["published_by"], published_at,
                     definitions, parts[1], rollout)


def decode_record(key: bytes | None, value: bytes | None) -> Published:
    """A record back as a publication, fully re-validated; DefinitionError names the key."""
    name = "(no key)" if key is None else key.decode("utf-8", errors="replace")
    try:
        return _decode(key, value)
    except DefinitionError as exc:
        raise DefinitionError(f"definitions record {name}: {exc}") from exc
    except KeyError as exc:  # only from_snapshot reads keys unchecked: a missing section
        raise DefinitionError(f"definitions record {name}: snapshot: missing {exc}") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        # ValueError covers bad JSON, bad UTF-8, bad ISO dates and pydantic validation errors.
        raise DefinitionError(f"definitions record {name}: {exc!s}") from exc


def choose_in_force(current: Published | None, candidate: Published) -> Published | None:
    """The newer of the two by sequence (never None: a candidate is always given).

    A candidate with the same sequence but another version comes later in the log: it wins,
    as compaction would keep it. The same publication again leaves ``current`` in force.
    """
    if current is None or candidate.sequence > current.sequence:
        return candidate
    if candidate.sequence == current.sequence and candidate.version != current.version:
        return candidate
    return current


def ensure_definitions_topic(settings: Settings) -> None:
    name = settings.topic(DEFINITIONS)
    spec = next(s for s in declared_topics(settings) if s.name == name)
    ensure_topics(admin_client(settings), [spec], settings.kafka_replication_factor, 10.0)


def _read_messages(settings: Settings, timeout_s: float) -> list[Message]:
    """Every message of the topic, as of now."""
    ensure_definitions_topic(settings)
    return read_topic(settings, settings.topic(DEFINITIONS), timeout_s, "definitions-reader")


def _scan(settings: Settings, timeout_s: float) -> tuple[list[Published], int]:
    """Valid publications by sequence (racing ones of the same sequence in log order),
    and the highest sequence any key claims."""
    by_key: dict[bytes | None, tuple[int, Published]] = {}
    highest = 0
    for msg in _read_messages(settings, timeout_s):
        if is_proposal(msg.key()):  # not a publication (streams/activation/approval.py)
            continue
        highest = max(highest, _key_sequence(msg.key()) or 0)
        try:
            p = decode_record(msg.key(), msg.value())
        except DefinitionError as exc:
            log.warning("skipping invalid definitions record: %s", exc)
            continue
        by_key[msg.key()] = (msg.offset() or 0, p)  # a later record of a key replaces it
    ordered = sorted(by_key.values(), key=lambda item: (item[1].sequence, item[0]))
    return [p for _, p in ordered], highest


def read_proposals(settings: Settings, timeout_s: float = 10.0) -> list[Proposal]:
    """Proposals awaiting approval (the newest record of each), oldest first."""
    found: dict[bytes, Proposal] = {}
    for msg in _read_messages(settings, timeout_s):
        key, value = msg.key(), msg.value()
        if not isinstance(key, bytes) or not is_proposal(key):
            continue
        if isinstance(value, bytes):
            found[key] = Proposal.decode(value)
        else:  # approved (or withdrawn): a tombstone
            found.pop(key, None)
    return sorted(found.values(), key=lambda p: p.proposed_at)


def read_history(settings: Settings, timeout_s: float = 10.0) -> list[Published]:
    """All valid publications in sequence order (invalid records skipped with a warning)."""
    return _scan(settings, timeout_s)[0]


def _write(settings: Settings, p: Published) -> None:
    """Write one publication and wait for every in-sync replica to acknowledge it."""
    write_record(settings, *encode_record(p))


def write_record(settings: Settings, key: bytes, value: bytes | None) -> None:
    """One record on the definitions topic (None: a tombstone), acknowledged by every
    in-sync replica."""
    producer = Producer({**settings.kafka_client_config(), "acks": "all",
                         "enable.idempotence": True, "message.timeout.ms": 10_000})
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    try:
        producer.produce(settings.topic(DEFINITIONS), key=key, value=value,
                         on_delivery=on_delivery)
    except (KafkaException, BufferError) as exc:
        raise BrokerError(f"cannot write definitions {key.decode()}: {exc}") from exc
    if producer.flush(ACK_TIMEOUT_S) != 0 or errors:
        raise BrokerError(f"definitions {key.decode()} not acknowledged: "
                          f"{'; '.join(errors) or 'timeout'}")


def publish(settings: Settings, directory: Path, author: str,
            now: datetime | None = None) -> tuple[Published, bool]:
    """Validate ``directory`` and publish it; (in force, whether a record was written).

    Publishing the version already in force writes nothing, so re-running is harmless.
    """
    return publish_set(settings, load_definitions(directory), author, now)


def publish_set(settings: Settings, definitions: DefinitionSet, author: str,
                now: datetime | None = None, rollout: Rollout | None = None,
                force: bool = False) -> tuple[Published, bool]:
    """Publish ``definitions`` (staged by ``rollout``, if given); ``force``: even if the
    same version is in force (a promotion ends a rollout of that very version).

    The set's channels get their topics and schema subjects first, whether or not the
    version is new (streams/activation/provision.py), so workers can send to them."""
    for line in provision_channels(settings, definitions):
        log.info("definitions channels: %s", line)
    history, highest = _scan(settings, 10.0)
    current = history[-1] if history else None
    unchanged = current is not None and current.version == definitions.version \
        and current.rollout is None and rollout is None
    if unchanged and not force and current is not None:
        return current, False
    # Above every key seen, valid or not: a record we cannot read (a newer format, say)
    # must not share a key with ours, or compaction would delete one of the two.
    sequence = max(highest, current.sequence if current else 0) + 1
    new = Published(sequence, definitions.version, author, now or datetime.now(UTC),
                    definitions, uuid.uuid4().hex[:12], rollout)
    _write(settings, new)
    return new, True


class DefinitionsFollower:
    """The definitions topic read fully at start, then followed (streams/follower.py).

    ``loaded`` is set once the topic was read to its end (at once for an empty topic).
    ``on_change`` runs on the follower's thread whenever the publication in force
    changes; during the initial read it runs once, for the last one.
    """

    def __init__(self, settings: Settings,
                 on_change: Callable[[Published], None] | None = None) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._current: Published | None = None
        self._notified: Published | None = None
        self._by_sequence: dict[int, Published] = {}
        self._follower = Follower(
            settings, settings.topic(DEFINITIONS), self._apply, "definitions-follower",
            on_loaded=self._notify, on_idle=self._notify,
            prepare=lambda: ensure_definitions_topic(settings))
        self.loaded = self._follower.loaded

    def current(self) -> Published | None:
        with self._lock:
            return self._current

    def stable(self) -> Published | None:
        """During a staged rollout, the publication the others keep."""
        with self._lock:
            current = self._current
            if current is None or current.rollout is None:
                return None
            return self._by_sequence.get(current.rollout.stable_sequence)

    def for_profile(self, profile_id: str, memberships: list[str] | tuple[str, ...] = ()
                    ) -> DefinitionSet | None:
        """The definitions that decide for ``profile_id`` (a staged rollout's cohort gets
        the candidate, the others the stable version)."""
        current, stable = self.current(), self.stable()
        if current is None:
            return None
        return for_profile(current.definitions, current.rollout,
                           None if stable is None else stable.definitions, profile_id,
                           memberships)

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if is_proposal(key):  # a proposal awaiting approval is never in force
            return
        try:
            candidate = decode_record(key, value)
        except DefinitionError as exc:
            log.warning("skipping invalid definitions record, the one in force stays: %s", exc)
            return
        with self._lock:
            self._by_sequence[candidate.sequence] = candidate
            self._current = choose_in_force(self._current, candidate)

    def _notify(self) -> None:
        current = self.current()
        if current is None or current is self._notified:
            return
        self._notified = current
        log.info("definitions in force: %s", _describe(current))
        if self._on_change is None:
            return
        try:
            self._on_change(current)
        except Exception:
            # A failing callback is the caller's bug; following the topic must go on.
            log.exception("definitions on_change callback failed")


def _describe(p: Published | None) -> str:
    if p is None:
        return "none published yet"
    return (f"version {p.version} (sequence {p.sequence}, by {p.published_by} "
            f"at {p.published_at.isoformat()})")
