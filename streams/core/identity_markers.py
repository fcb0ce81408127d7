"""The identity stage's dedup markers as the slots' protocol writes them: at arrival, and
once the event is decided (its profile) or abandoned (no marker: it was never applied).
The steps that write them are in streams/core/identity_ticket.py."""

from __future__ import annotations

import json

import orjson

from streams.core.dedup import dedup_key
from streams.core.identity_messages import EventRef
from streams.core.identity_stage import new_marker
from streams.core.pipeline import Store


def mark(store: Store, ev: EventRef, seen_us: int | None, pid: str) -> None:
    """A new arrival's marker (one write, as today's), or a waiter's, once decided."""
    if seen_us is not None:
        store[dedup_key(ev.event_id)] = new_marker(seen_us, ev.origin, pid)
    elif pid:
        set_marker(store, ev.event_id, pid)


def set_marker(store: Store, event_id: str, pid: str | None) -> None:
    """The marker's profile once decided; None deletes it (the event was not applied)."""
    mkey = dedup_key(event_id)
    raw = store.get(mkey)
    if raw is None:
        return
    if pid is None:
        del store[mkey]
    else:
        store[mkey] = with_pid(raw, pid)


def with_pid(raw: bytes, pid: str) -> bytes:
    """Marker ``raw`` with its profile set: what ``json.dumps({**json.loads(raw), "pid":
    pid})`` writes, built directly for a marker of the usual three fields (once per
    event of this layout, and json's encoder set-up cost more than the rest)."""
    marker = orjson.loads(raw)
    if list(marker) in (["seen_us", "origin", "pid"], ["seen_us", "origin"]):
        return new_marker(marker["seen_us"], marker["origin"], pid)
    return json.dumps({**marker, "pid": pid}).encode()
