"""The executor's records and the seams between its asyncio side and the rest: what a
consumed command looks like (:class:`Incoming`), where records go (:class:`Staging`),
how commands and outcomes are (de)serialised (:class:`Codec`), the topics it writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.delivery.ledger import Ledger, Offsets

# (topic, key, value, partition or None, headers)
Record = tuple[str, bytes | None, bytes, int | None, list[tuple[str, str | bytes | None]] | None]


class Staging(Protocol):
    def stage(self, topic: str, partition: int, records: list[Record],
              offset: int | None) -> None: ...


class Codec(Protocol):
    """Decoding commands and encoding what the executor writes (Avro, registry)."""

    def command(self, value: bytes) -> dict[str, Any]: ...

    def outcome(self, record: dict[str, Any]) -> bytes: ...

    def dead_letter(self, record: dict[str, Any]) -> bytes: ...


@dataclass(frozen=True)
class Topics:
    ledger: str
    outcomes: str
    dead_letters: str
    control: str
    profiles: str  # the profile stage's, for the outcomes' timeline notes
    profile_partitions: int


@dataclass
class Owned:
    generation: int
    ledger: Ledger
    offsets: Offsets = field(default_factory=Offsets)


@dataclass(slots=True)
class Incoming:
    """A consumed command record, as the Kafka thread hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]


class Unbound:
    """Staging before the Kafka side is bound: refuses (a wiring bug, not data)."""

    def stage(self, topic: str, partition: int, records: list[Record],
              offset: int | None) -> None:
        raise RuntimeError("Executor.bind() was not called")

