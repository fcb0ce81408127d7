"""What a step of the partitioned identity protocol asks the wiring to do besides
handling messages (streams/core/identity_messages.py has the messages): send a message
to a slot, forward an event or a ``merge-out`` to the profile stage, dead-letter an
event, count an outcome, finish an erasure. The wiring is agents/identity.py; the
unit tests' harness is tests/unit/core/partitioned.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.identity_messages import EventRef, Message, RelinkTicket
from streams.core.routing import MergeOut


@dataclass(frozen=True)
class Send:
    """A message for identity slot ``slot`` (``internal.identity`` partition)."""

    slot: int
    message: Message


@dataclass(frozen=True)
class ToProfile:
    """The event, resolved to ``profile_id``, for the profile stage (version-2 batch to
    ``partition_of(profile_id)``), after whatever this step forwarded before it."""

    event: EventRef
    profile_id: str


@dataclass(frozen=True)
class MergeOutput:
    """Today's ``merge-out`` for the loser's profile partition."""

    merge: MergeOut


@dataclass(frozen=True)
class ProfileCommand:
    """A command (streams/core/routing.py) for ``profile_id``'s profile partition."""

    name: bytes
    profile_id: str
    body: bytes


@dataclass(frozen=True)
class Decided:
    """An event's decision, made here: applied to ``profile_id`` with ``merges``. The
    order of these across slots (commit order) is the decision order of design 4."""

    event: EventRef
    profile_id: str
    merges: tuple[MergeOut, ...] = ()


@dataclass(frozen=True)
class Relinked:
    """An undone merge's keys left ``target`` (the winner's canonical profile) here."""

    ticket: RelinkTicket


@dataclass(frozen=True)
class Dropped:
    """An event not applied: ``REPLAYED``, ``DUPLICATE`` or ``suppressed``."""

    event_id: str
    status: str


@dataclass(frozen=True)
class GaveUp:
    """An event the protocol gave up on: a dead letter (the record in ``event``)."""

    event: EventRef
    reason: str


@dataclass(frozen=True)
class Erased:
    """An erasure done: its audit record, and the keys screening must drop from now on."""

    request_id: str
    audit: str  # JSON, no personal data
    suppressed: tuple[str, ...]


@dataclass(frozen=True)
class TickDone:
    """Every slot has waited out the events it held undecided when a tick reached it:
    the tick (``body``, as the leader sent it) goes on to every profile partition."""

    body: bytes


Output = (Send | ToProfile | MergeOutput | ProfileCommand | Decided | Relinked | Dropped | GaveUp
          | Erased | TickDone)
