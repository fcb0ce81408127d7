"""The identity stage's work on one input record: dedup and identity resolution of its
events (streams/core/identity_stage.py), and its commands.

Events go on, resolved, to their profile's partition; each merge becomes a
``merge-out`` for the loser's partition, after the events routed there before it.
Commands: a tick goes to every profile partition; an undo to the profile that holds
the merge; a relink (an undo done) gives identifiers back; an erasure forgets a
customer here and goes on to the profile's partition (streams/core/erasure.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from streams.core.batch import BatchItem, parse_origin
from streams.core.contract import ContractViolation
from streams.core.deadletter import SourceRecord
from streams.core.erasure import Request, Scan, erase_identity
from streams.core.identity_stage import relink, route_event
from streams.core.pipeline import APPLIED, Store, canonical_id
from streams.core.routing import ERASE, MERGE_OUT, RELINK, TICK, UNDO_MERGE
from streams.core.stages.outputs import Broadcast, Command, Outputs, Resolved
from streams.errors import BrokerError
from streams.records import Envelope
from streams.topics import ERASURES, SUPPRESSIONS

log = logging.getLogger(__name__)
STAGE = "stream.identity"


def source_of(item: BatchItem) -> SourceRecord:
    """The ingestion record an event came from: a dead letter re-drives to it."""
    topic, partition, offset = parse_origin(item.origin)
    return SourceRecord(topic, partition, offset, item.key, item.value)


def events(store: Store, items: Sequence[tuple[BatchItem, Envelope | str]], now: datetime,
           window: timedelta, out: Outputs) -> None:
    """Each event (or why it has no valid envelope) deduplicated and resolved, in order."""
    for item, envelope in items:
        try:
            if isinstance(envelope, str):
                raise ContractViolation(envelope)
            routed = route_event(store, envelope, now, window, item.origin)
        except BrokerError:  # the state's transaction failed: the record is done again
            raise
        except Exception as exc:  # a bug must not stall the partition: park the event
            log.exception("identity stage failed on %s", item.origin)
            out.park(source_of(item), f"{type(exc).__name__}: {exc}", now)
            continue
        out.statuses[routed.status] += 1
        if routed.status == APPLIED:
            # its envelope (decoded or carried bytes) goes on with it
            out.sends.append(Resolved(item._replace(profile=routed.profile_id)))
        out.sends.extend(Command(MERGE_OUT, m.loser, m.to_json()) for m in routed.merges)
        out.counts["merges"] += len(routed.merges)


def command(store: Store, scan: Scan, name: bytes, body: bytes, now: datetime,
            out: Outputs) -> None:
    """One command; a malformed or unknown one is logged and ignored (never retried)."""
    if name == TICK:
        out.sends.append(Broadcast(TICK, body))
        return
    try:
        doc = json.loads(body)
        if name == UNDO_MERGE:
            pid = canonical_id(store, doc["profile_id"])
            out.sends.append(Command(UNDO_MERGE, pid, json.dumps(
                {"profile_id": pid, "event_id": doc["event_id"]}).encode()))
        elif name == ERASE:
            erase(store, scan, Request.from_json(body), now, out)
        elif name == RELINK:
            relink(store, doc["winner"], doc["loser"], doc["moved_keys"])
            log.info("merge of %s into %s undone: %d identifiers back", doc["loser"],
                     doc["winner"], len(doc["moved_keys"]))
        else:
            log.warning("identity stage: ignored unknown command %r", name)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("identity stage: ignored malformed %r command: %s", name, exc)


def erase(store: Store, scan: Scan, request: Request, now: datetime, out: Outputs) -> None:
    """Forget an identifier's profile here; the profile stage erases the rest. The
    suppressions and the audit record go out in this record's transaction."""
    done = erase_identity(store, scan, request, now)
    if done.profile_id is not None:
        out.sends.append(Command(ERASE, done.profile_id, json.dumps(
            {"request": json.loads(request.to_json()),
             "profile_id": done.profile_id}).encode()))
    marker = json.dumps({"request_id": request.request_id}).encode()
    out.records.extend((SUPPRESSIONS, key.encode(), marker) for key in done.suppressed)
    out.records.append((ERASURES, request.request_id.encode(),
                        json.dumps(done.audit).encode()))
    log.info("erasure %s: %s", request.request_id, json.dumps(done.audit))
