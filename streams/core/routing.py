"""How the identity stage hands work to the profile stage: partitions and commands.

The profile stage's topic (``internal.profiles``) is partitioned by canonical profile
id, so each profile, its merge history and its activation state live in exactly one
partition's store, owned by one worker. Besides batches of resolved events
(streams/core/batch.py, version 2), the topic carries commands, each a JSON body under
the ``x-activation-command`` header:

``tick``        a timer tick, fanned out by the identity stage to every partition
``merge-out``   to the loser's partition: profile L was merged into W (a :class:`MergeOut`)
``merge-in``    from the loser's partition to the winner's: L's last state, history
                and activation notes
``undo-merge``  to the winner's partition: undo a merge recorded there
``restore``     to the loser's partition after an undo: its profile again
``erase``       to the identity stage (scripts/erase), then from it to the profile's
                partition, and on to those of the profiles merged into it
                (streams/core/erasure.py)
``delivery-note`` to the profile's partition: a delivery outcome for its timeline, sent
                by the delivery executor with the outcome (streams/delivery/executor.py)
``schedule-run`` a scheduled action run by hand (scripts/schedules), sent by that CLI
                straight to every partition: {schedule_id, at} (streams/activation/schedules.py)

What the loser's retirement emits (its audience exits, its journeys' clean-up such as
paid-media removals) is published under the *winner's* key: on every action topic
partition it comes before anything the winner's ``merge-in`` adds, which is committed
later.

And one command travels back to the identity stage (``internal.identity``):
``relink``, which gives an undone merge's identifiers back to the loser.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.core.identity import new_profile_id

TICK = b"tick"
UNDO_MERGE = b"undo-merge"
COMMAND_HEADER = "x-activation-command"  # names the command a record carries
MERGE_OUT = b"merge-out"
MERGE_IN = b"merge-in"
RESTORE = b"restore"
RELINK = b"relink"
SCHEDULE_RUN = b"schedule-run"
DELIVERY_NOTE = b"delivery-note"
ERASE = b"erase"
# A message of the partitioned identity protocol, from slot to slot of internal.identity
# (streams/core/identity_messages.py: its JSON body names the message type).
IDENTITY_PROTOCOL = b"identity-protocol"
# Profile ids whose partition is remembered (each about 200 bytes with its entry).
PARTITION_MEMO = 65_536


@functools.lru_cache(maxsize=PARTITION_MEMO)
def partition_of(profile_id: str, partitions: int) -> int:
    """The profile stage partition that owns ``profile_id`` (stable across restarts and
    Python versions: a digest, not ``hash()``). Memoised: called for every event sent
    on (and again for its batch), mostly for the same active profiles."""
    digest = hashlib.blake2b(profile_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def profile_slot(profile_id: str, slots: int) -> int:
    """The identity slot (partition of ``internal.identity`` when it has ``slots``) that
    keeps ``profile_id``'s directory (``r:``, ``k:``, ``v:``, ``l:``): the same digest
    as :func:`partition_of` (docs/partitioned-identity.md, 2.1)."""
    return partition_of(profile_id, slots)


@functools.lru_cache(maxsize=PARTITION_MEMO)
def key_slot(key: str, slots: int) -> int:
    """The identity slot that keeps identifier ``key``'s hint, claim and home guard: the
    slot of the profile the key would create, so that a profile created from ``key``
    has its directory next to the key's hint and its events resolve in one hop."""
    if slots == 1:  # the single layout: no digests to compute per event
        return 0
    return partition_of(new_profile_id(key), slots)


@dataclass(frozen=True)
class MergeOut:
    """Profile ``loser`` was merged into ``winner`` by event ``event_id``."""

    event_id: str
    merged_at_us: int  # event time of the linking event
    winner: str
    loser: str
    linking_keys: tuple[str, ...]  # the event's identifier keys that were already known
    moved_keys: tuple[str, ...]  # the loser's identifier keys, now the winner's

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MergeOut:
        return cls(str(data["event_id"]), int(data["merged_at_us"]), str(data["winner"]),
                   str(data["loser"]), tuple(data["linking_keys"]), tuple(data["moved_keys"]))

    @classmethod
    def from_json(cls, raw: bytes) -> MergeOut:
        return cls.from_dict(json.loads(raw))


@dataclass(frozen=True)
class MergeIn:
    """What the loser's partition sends the winner's: the merge, and the loser as it was
    (profile JSON) with its own merge history (JSON list of merge records) and its
    activation notes (streams/activation/notes.py; absent in records of older workers)."""

    merge: MergeOut
    loser_profile: str
    loser_history: list[dict[str, Any]]
    loser_notes: list[dict[str, Any]] = field(default_factory=list)
    # A merge that reached its winner after the winner was merged away
    # (streams/core/late_merge.py): the survivor it is folded into, and the winner as it
    # was when merged away (the record's winner snapshot). Empty otherwise.
    into: str = ""
    winner_snapshot: str = ""

    def to_json(self) -> bytes:
        late = {"into": self.into, "winner_snapshot": self.winner_snapshot} if self.into else {}
        return json.dumps({"merge": asdict(self.merge), "loser_profile": self.loser_profile,
                           "loser_history": self.loser_history,
                           "loser_notes": self.loser_notes, **late}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> MergeIn:
        data = json.loads(raw)
        return cls(MergeOut.from_dict(data["merge"]), str(data["loser_profile"]),
                   list(data["loser_history"]), list(data.get("loser_notes") or []),
                   str(data.get("into") or ""), str(data.get("winner_snapshot") or ""))
