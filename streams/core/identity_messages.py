"""The partitioned identity protocol's messages and their JSON.

docs/partitioned-identity.md (section 3) is the design; streams/core/identity_protocol.py
the step functions. Messages travel between identity slots (partitions of
``internal.identity``) as JSON bodies with a protocol version (``"pv": 1``) and a
``type``; a worker that reads a version it does not know fails the record rather than
guess (the rollout order of section 7 keeps that from happening). What a step asks
the wiring to do besides sending messages is in streams/core/identity_outputs.py.

Every field is derived from the input and the slot's store, never from a clock: the
only wall-clock value is an arrival's ``now_us``, the dedup marker's time.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import msgspec
import orjson

from streams.core.routing import MergeOut

PROTOCOL_VERSION = 1
_PACK = msgspec.msgpack.Encoder()
# (event id, time, keys, origin, record key, value, carried): checked as it is read
_UNPACK = msgspec.msgpack.Decoder(
    tuple[str, int, list[str], str, bytes | None, bytes, bytes])


class ProtocolError(ValueError):
    """A message this worker cannot read (another protocol version, or malformed)."""


@dataclass(frozen=True)
class EventRef:
    """What the protocol needs of a screened event: its id, time and identifier keys
    (strongest first), and the ingestion record it came from, so that the hop that
    decides can forward it and a give-up can dead-letter it; ``carried``: the envelope
    screening decoded, in streams/core/carried.py's form, so that an event that waits
    or travels as a ticket reaches the profile stage decoded (one decode per event)."""

    event_id: str
    time_us: int  # event time, µs: a merge's merged_at
    keys: tuple[str, ...]
    origin: str = ""  # topic:partition:offset of the ingestion record
    record_key: bytes | None = None
    value: bytes = b""
    carried: bytes = b""  # empty: not known (a message from before the field existed)

    @property
    def home(self) -> str:
        """The home key: the strongest identifier, the one the ingestion topic is keyed by."""
        return self.keys[0]

    def to_dict(self) -> dict[str, Any]:
        out = {"event_id": self.event_id, "time_us": self.time_us, "keys": list(self.keys),
               "origin": self.origin, "record_key": _b64(self.record_key),
               "value": _b64(self.value)}
        if self.carried:  # optional: a reader before the field ignores it
            out["carried"] = _b64(self.carried)
        return out

    def packed(self) -> bytes:
        """The event as a waiter stores it: MessagePack, its bytes as they are (no
        base64). Most events of a new customer wait behind its first event's ticket
        (70% of a backlog of new customers, measured), so this is written, logged to
        the changelog and read back once for each of them."""
        return _PACK.encode((self.event_id, self.time_us, self.keys, self.origin,
                             self.record_key, self.value, self.carried))

    @classmethod
    def unpacked(cls, raw: bytes) -> EventRef:
        event_id, time_us, keys, origin, record_key, value, carried = _UNPACK.decode(raw)
        return cls(event_id, time_us, tuple(keys), origin, record_key, value, carried)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EventRef:
        key = d.get("record_key")
        return cls(str(d["event_id"]), int(d["time_us"]), tuple(str(k) for k in d["keys"]),
                   str(d.get("origin", "")), None if key is None else _unb64(key),
                   _unb64(d.get("value") or ""), _unb64(d.get("carried") or ""))


@dataclass(frozen=True)
class Hint:
    """Where a ticket will look for a key's owner: a profile id (a hint followed through
    the redirects seen so far) and the hint's version when it was read (-1: not read
    from a hint, but proven by a directory at entry)."""

    pid: str
    seen: int = -1


@dataclass(frozen=True)
class Held:
    """A directory a ticket locked: its keys and version, as they stay until released,
    and the token its lock holds (see :attr:`Ticket.token`)."""

    keys: tuple[str, ...]
    version: int
    token: str


@dataclass(frozen=True)
class Ticket:
    """An event on the slow path, travelling between slots (design 3.3). Keys are
    *pending* until they have an owner hint or a claim; ``recheck`` keys were not in
    the directory their hint led to and wait for a newer hint (their last version)."""

    event: EventRef
    owners: Mapping[str, Hint] = field(default_factory=dict)
    claims: tuple[str, ...] = ()  # unknown keys this ticket reserved (``c:``)
    locked: Mapping[str, Held] = field(default_factory=dict)  # profile id -> snapshot
    recheck: Mapping[str, int] = field(default_factory=dict)
    suppressed: tuple[str, ...] = ()  # keys found erased (``x:``) at their slot
    restarts: int = 0
    hops: int = 0
    epoch: int = 0  # bumped whenever it releases locks it may take again

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def token(self) -> str:
        """What a lock it takes now holds: a release it sent before taking a lock again
        (which may arrive after, from another slot) must not release the new one."""
        return f"{self.event_id}#{self.epoch}"

    def pending(self) -> list[str]:
        return [k for k in self.event.keys if k not in self.owners and k not in self.claims]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event.to_dict(),
                "owners": {k: [h.pid, h.seen] for k, h in self.owners.items()},
                "claims": list(self.claims),
                "locked": {p: [list(h.keys), h.version, h.token]
                           for p, h in self.locked.items()},
                "recheck": dict(self.recheck), "suppressed": list(self.suppressed),
                "restarts": self.restarts, "hops": self.hops, "epoch": self.epoch}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ticket:
        return cls(EventRef.from_dict(d["event"]),
                   {str(k): Hint(str(v[0]), int(v[1])) for k, v in d["owners"].items()},
                   tuple(d["claims"]),
                   {str(p): Held(tuple(v[0]), int(v[1]), str(v[2]))
                    for p, v in d["locked"].items()},
                   {str(k): int(v) for k, v in d["recheck"].items()},
                   tuple(d["suppressed"]), int(d["restarts"]), int(d["hops"]),
                   int(d["epoch"]))


@dataclass(frozen=True)
class RelinkTicket:
    """An undone merge on its way (design 3.6): lock the loser, then the winner's
    canonical profile, which gives the moved keys back; the loser takes them again."""

    event_id: str  # the merge's event
    winner: str
    loser: str
    moved_keys: tuple[str, ...]
    target: str = ""  # the canonical profile the winner led to ("" until found)
    loser_version: int = -1  # the loser's ``v:`` once locked (-1: not yet)
    hops: int = 0

    @property
    def holder(self) -> str:
        """Its name in locks: apart from any event's (an event id cannot collide)."""
        return "undo:" + self.event_id

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "winner": self.winner, "loser": self.loser,
                "moved_keys": list(self.moved_keys), "target": self.target,
                "loser_version": self.loser_version, "hops": self.hops}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RelinkTicket:
        return cls(str(d["event_id"]), str(d["winner"]), str(d["loser"]),
                   tuple(d["moved_keys"]), str(d.get("target", "")),
                   int(d.get("loser_version", -1)), int(d.get("hops", 0)))


# --- messages between identity slots -------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """A screened event at its home slot (on the topic: an event of a batch record)."""

    KIND: ClassVar[str] = "arrival"
    event: EventRef
    now_us: int  # wall clock when read: the dedup marker's time, nothing else


@dataclass(frozen=True)
class Resolve:
    """A ticket's next hop."""

    KIND: ClassVar[str] = "resolve"
    ticket: Ticket


@dataclass(frozen=True)
class Absorb:
    """To a loser's slot: it was merged (``merge``) at directory version ``version``;
    ``holder`` is the deciding ticket's lock on it."""

    KIND: ClassVar[str] = "absorb"
    merge: MergeOut
    version: int
    holder: str


@dataclass(frozen=True)
class Link:
    """To a claimed key's slot: the key now belongs to ``pid``; the claim is released."""

    KIND: ClassVar[str] = "link"
    event_id: str
    key: str
    pid: str
    version: int


@dataclass(frozen=True)
class Repoint:
    """To a key's slot: its hint is ``pid`` from ``version`` on (older ones are ignored)."""

    KIND: ClassVar[str] = "repoint"
    key: str
    pid: str
    version: int
    from_pid: str = ""  # informative: the profile it left


@dataclass(frozen=True)
class Release:
    """A resource (``c/<key>`` or ``l/<pid>``) a ticket gives back without using it."""

    KIND: ClassVar[str] = "release"
    holder: str
    resource: str


@dataclass(frozen=True)
class Settled:
    """To the home slot: the event was decided (for ``pid``): its guard is lifted."""

    KIND: ClassVar[str] = "settled"
    event_id: str
    home: str
    pid: str


@dataclass(frozen=True)
class Abandon:
    """To the home slot: the ticket gave up (dead letter) or was suppressed (dropped);
    everything else it held is released already."""

    KIND: ClassVar[str] = "abandon"
    event: EventRef
    reason: str
    dead_letter: bool = True


@dataclass(frozen=True)
class Relink:
    """From the profile stage after an undo, to the loser's slot: a relink ticket."""

    KIND: ClassVar[str] = "relink"
    ticket: RelinkTicket


@dataclass(frozen=True)
class Unabsorb:
    """To the loser's slot once the winner's side gave the keys up."""

    KIND: ClassVar[str] = "unabsorb"
    ticket: RelinkTicket
    version: int


@dataclass(frozen=True)
class UndoMerge:
    """From the API: undo a merge into ``profile_id``, forwarded along redirects to the
    canonical profile and on to its profile partition."""

    KIND: ClassVar[str] = "undo-merge"
    profile_id: str
    event_id: str


@dataclass(frozen=True)
class Erase:
    """An erasure's way through the slots (streams/core/identity_erasure.py): ``step``
    is ``key`` (at the identifier's slot), ``profile`` (along redirects to the
    canonical profile, which it locks), ``forget`` (at each of its keys' slots) and
    ``forgotten`` (back at the profile, which it releases after the last key)."""

    KIND: ClassVar[str] = "erase"
    step: str
    request: str  # the request, streams/core/erasure.py's JSON
    now_us: int  # when the stage read it: the audit's processed_at
    pid: str = ""
    key: str = ""


@dataclass(frozen=True)
class Tick:
    """A timer tick through the barrier (streams/core/identity_tick.py). ``phase``:
    ``start`` where the tick record landed, ``hold`` at every slot (waits out the events
    undecided there), ``ready`` at the coordinator (from ``from_slot``)."""

    KIND: ClassVar[str] = "tick"
    phase: str
    body: str  # the tick record's value as the leader sent it: {"now": <instant>}
    from_slot: int = -1


Message = (Arrival | Resolve | Absorb | Link | Repoint | Release | Settled | Abandon | Relink
           | Unabsorb | UndoMerge | Erase | Tick)


def encode(message: Message) -> bytes:
    """orjson: an arrival carries the event twice in base64 (its record and its decoded
    envelope), and the stdlib's encoder and decoder were a third of the protocol's own
    CPU (bench.stages). Compact JSON; a reader of either spelling reads the other."""
    return orjson.dumps({"pv": PROTOCOL_VERSION, "type": message.KIND, **_body(message)})


def _body(m: Message) -> dict[str, Any]:
    if isinstance(m, Arrival):
        return {"event": m.event.to_dict(), "now_us": m.now_us}
    if isinstance(m, Resolve):
        return {"ticket": m.ticket.to_dict()}
    if isinstance(m, Absorb):
        return {"merge": json.loads(m.merge.to_json()), "version": m.version,
                "holder": m.holder}
    if isinstance(m, Abandon):
        return {"event": m.event.to_dict(), "reason": m.reason, "dead_letter": m.dead_letter}
    if isinstance(m, Relink | Unabsorb):
        extra = {"version": m.version} if isinstance(m, Unabsorb) else {}
        return {"ticket": m.ticket.to_dict(), **extra}
    return dict(vars(m))  # the rest have flat string and int fields


def encode_many(messages: list[Message]) -> bytes:
    """Several messages for one slot in one record, one JSON document a line (JSON
    escapes newlines): a record of one message is :func:`encode`'s, so either reads
    the other's."""
    return b"\n".join(encode(m) for m in messages)


def decode_many(raw: bytes) -> list[Message]:
    return [decode(line) for line in raw.split(b"\n")]


def decode(raw: bytes) -> Message:
    try:
        doc = orjson.loads(raw)
        version = doc.get("pv")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"identity protocol version {version!r}; this worker reads "
                                f"{PROTOCOL_VERSION} (upgrade the worker)")
        return _decoded(str(doc["type"]), doc)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"unreadable identity message: {exc!r}") from exc


def _decoded(kind: str, d: dict[str, Any]) -> Message:
    if kind == Arrival.KIND:
        return Arrival(EventRef.from_dict(d["event"]), int(d["now_us"]))
    if kind == Resolve.KIND:
        return Resolve(Ticket.from_dict(d["ticket"]))
    if kind == Absorb.KIND:
        return Absorb(MergeOut.from_dict(d["merge"]), int(d["version"]), str(d["holder"]))
    if kind == Abandon.KIND:
        return Abandon(EventRef.from_dict(d["event"]), str(d["reason"]), bool(d["dead_letter"]))
    if kind == Relink.KIND:
        return Relink(RelinkTicket.from_dict(d["ticket"]))
    if kind == Unabsorb.KIND:
        return Unabsorb(RelinkTicket.from_dict(d["ticket"]), int(d["version"]))
    if kind == Link.KIND:
        return Link(str(d["event_id"]), str(d["key"]), str(d["pid"]), int(d["version"]))
    if kind == Repoint.KIND:
        return Repoint(str(d["key"]), str(d["pid"]), int(d["version"]), str(d["from_pid"]))
    if kind == Release.KIND:
        return Release(str(d["holder"]), str(d["resource"]))
    if kind == Settled.KIND:
        return Settled(str(d["event_id"]), str(d["home"]), str(d["pid"]))
    if kind == UndoMerge.KIND:
        return UndoMerge(str(d["profile_id"]), str(d["event_id"]))
    if kind == Erase.KIND:
        return Erase(str(d["step"]), str(d["request"]), int(d["now_us"]), str(d["pid"]),
                     str(d["key"]))
    if kind == Tick.KIND:
        return Tick(str(d["phase"]), str(d["body"]), int(d["from_slot"]))
    raise ProtocolError(f"unknown identity message type {kind!r}")


def hopped(ticket: Ticket) -> Ticket:
    return replace(ticket, hops=ticket.hops + 1)


def _b64(data: bytes | None) -> str | None:
    """Standard base64 (binascii: base64's module is a Python wrapper around it)."""
    return None if data is None else binascii.b2a_base64(data, newline=False).decode()


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text)
