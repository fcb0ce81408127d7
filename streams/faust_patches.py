"""Every change we make to Faust's (and aiokafka's, and mode's) behaviour, in one place.

Each patch corrects one upstream behaviour that no setting or public API changes (the
reasons are in docs/faust.md), and each has tests in tests/unit/test_faust_patches.py:
one that exercises the unpatched upstream code and fails the day upstream changes that
behaviour (then the patch must be reviewed, perhaps removed), and one that the patch
does what it says. :func:`apply_all` is called by ``streams.app.create_app``; applying
twice changes nothing. Each replacement keeps the function it replaced as
``__wrapped__``, so :func:`upstream` finds the original under any number of patches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode.utils.queues import FlowControlEvent

PATCH_MARK = "activation_patch"  # the attribute naming the patch on a replacement


@dataclass(frozen=True)
class Patch:
    """``owner.attribute`` replaced by ``make(upstream function)``."""

    name: str
    owner: type
    attribute: str
    make: Callable[[Any], Callable[..., Any]]


def _names(function: Any) -> set[str]:
    """The patches already stacked on ``function``."""
    names: set[str] = set()
    while getattr(function, PATCH_MARK, None):
        names.add(getattr(function, PATCH_MARK))
        function = function.__wrapped__
    return names


def upstream(owner: type, attribute: str) -> Any:
    """``owner.attribute`` as upstream defines it, under whatever patches are applied."""
    function = owner.__dict__[attribute]
    while getattr(function, PATCH_MARK, None):
        function = function.__wrapped__
    return function


def install(patch: Patch) -> None:
    current = patch.owner.__dict__[patch.attribute]
    if patch.name in _names(current):
        return
    replacement: Any = patch.make(current)
    replacement.__wrapped__ = current
    setattr(replacement, PATCH_MARK, patch.name)
    setattr(patch.owner, patch.attribute, replacement)


def _keep_queued(_upstream: Any) -> Callable[[FlowControlEvent], None]:
    def resume(self: FlowControlEvent) -> None:
        self._suspend.clear()
        self._resume.set()  # and, unlike upstream, no self.clear() of the stream buffers

    return resume


def _read_committed(original: Any) -> Callable[..., Any]:
    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._isolation_level = "read_committed"  # read when the consumer starts
        return consumer

    return create


def _fetch_wait(original: Any) -> Callable[..., Any]:
    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read when the consumer starts
        return consumer

    return create


def _faust_assignor(original: Any) -> Callable[..., Any]:
    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._partition_assignment_strategy = [self.app.assignor]  # read at start
        return consumer

    return create


def _seek_fresh(original: Any) -> Callable[..., Any]:
    async def perform_seek(self: Any) -> None:
        await original(self)
        for tp in self.assignment():
            if not self._committed_offset.get(tp):  # none (or 0, which Faust keeps as None)
                await self.seek(tp, 0)

    return perform_seek


def _gap_without_record(original: Any) -> Callable[..., Any]:
    async def add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        # ``offset_to`` is the record just delivered: it is acked on its own.
        await original(self, tp, offset_from, offset_to - 1)

    return add_gap


KEEP_QUEUED_MESSAGES_ON_RESUME = Patch(
    "keep_queued_messages_on_resume", FlowControlEvent, "resume", _keep_queued)
"""Faust resumes the stream partitions and seeks them to their committed offsets while
the fetcher already runs, then resumes flow control, which (upstream) empties every
stream buffer. A record fetched during that seek was emptied away and never fetched
again (the position is past it), and Faust's commit tolerates a one-offset hole, so its
offset was committed unprocessed: the first record after a restart went missing. Kept
buffers close that hole; revoked partitions' buffers are still emptied by Faust's
explicit ``flow_control.clear()`` on revocation, and a record delivered twice is a
replay the profile stage skips (docs/faust.md has the one narrow window left)."""

READ_COMMITTED_ONLY = Patch(
    "read_committed_only", AIOKafkaConsumerThread, "_create_worker_consumer",
    _read_committed)
"""The worker's consumer reads only committed records: ``internal.profiles`` is written
inside the identity stage's transactions, and a record of an aborted one must never be
applied. Faust asks for read_committed only under ``processing_guarantee=
"exactly_once"``, which also makes its producers transactional; our stages run their
own transactions (tables/state.py)."""

FETCH_WAIT_FROM_SETTINGS = Patch(
    "fetch_wait_from_settings", AIOKafkaConsumerThread, "_create_worker_consumer",
    _fetch_wait)
"""The worker's fetches wait at most ``ACTIVATION_WORKER_FETCH_MAX_WAIT`` for data
(the app's ``fetch_max_wait_ms``), not Faust's fixed 1.5 s. aiokafka keeps one fetch in
flight per broker, covering only the partitions with nothing buffered when it was sent;
a partition drained meanwhile (a stage's input, fed by another stage of the same
worker) is fetched again only when that fetch returns. With the broker holding it for
want of data on the other partitions, the pipeline stalled for up to 1.5 s at a time
(measured: 0.8 s with every process idle, in a 4.4 s run of 20,000 events)."""

FAUST_ASSIGNOR_ALWAYS = Patch(
    "faust_assignor_always", AIOKafkaConsumerThread, "_create_worker_consumer",
    _faust_assignor)
"""Faust's partition assignor even though no Faust table exists: Faust falls back to
aiokafka's round-robin then, and only Faust's shares every member's web URL and
partitions with the group, which the profile API needs to forward a request to the
owner of a profile's partition (agents/api.py)."""

SEEK_FRESH_PARTITIONS_TO_START = Patch(
    "seek_fresh_partitions_to_start", Consumer, "perform_seek", _seek_fresh)
"""After a rebalance, a partition without a committed offset is read from its start.
aiokafka seeks only to a committed offset above 0, so a partition fetched from in the
previous generation and assigned again before any commit kept its fetch position; the
records fetched then were dropped on revocation and Faust's next commit skipped them."""

GAPS_EXCLUDE_THE_RECORD = Patch(
    "gaps_exclude_the_record", Consumer, "_add_gap", _gap_without_record)
"""A gap in offsets (a transaction marker, an aborted record) is recorded so Faust's
commit can step over it. Upstream records the gap up to *and including* the record
that revealed it; that record is acked too, so its offset is in the acked list twice,
and Faust's commit (which stops at the first non-consecutive offset) then advances two
offsets per commit interval. A partition where every record is its own transaction
(the identity protocol's messages) committed one record a second: a restart re-read
hours of it. The gap now ends before the record."""

PATCHES = (KEEP_QUEUED_MESSAGES_ON_RESUME, READ_COMMITTED_ONLY, FETCH_WAIT_FROM_SETTINGS,
           FAUST_ASSIGNOR_ALWAYS, SEEK_FRESH_PARTITIONS_TO_START, GAPS_EXCLUDE_THE_RECORD)


def apply_all() -> None:
    """Install every patch (idempotent)."""
    for patch in PATCHES:
        install(patch)
