"""Activation's timeline notes: each decision and audience move, kept beside the profile.

The profile API shows one timeline, newest first: the profile's events and these notes
(``kind`` tells them apart; ``detail`` says which rule, journey and definitions). They
are stored apart from the profile because they are activation's record, not the
customer's history:

- the profile's own timeline bounds the *event* history that audiences read ("at
  least 3 purchases within a year"); notes kept in it pushed events out, so activation
  changed the very facts it evaluates;
- the profile is rewritten on every event; notes in it made it several times larger
  (with 50 audiences: 12 KB instead of 2.6 KB), and every byte went to the changelog
  again with each event. A note is written once.

Keys in the partition's store: ``n:<profile>\\x00<slot, 6 digits>``, a ring of
``limit`` slots per profile; ``ActivationState.notes_written`` says which slot is next,
so the notes of the newest ``limit`` records are kept and older slots are overwritten
in place. A slot holds the notes of one record, as a JSON array: one write per record,
not per note (a record with 50 audiences published moves several at once, and each
write is a changelog record). A slot written before holds one note, a JSON object;
both read alike. The state and the notes of one record commit together
(tables/state.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec
import pydantic_core

from streams.core.profile import micros, timeline_order
from streams.core.store import Store as Store  # the one protocol

NOTES = b"n:"
_DECISION_DETAIL = ("channel", "rule", "reason", "action_id", "journey_id", "step_id",
                    "definitions_version", "not_before", "variants")
_CHANGE_DETAIL = ("audience_id", "change", "caused_by", "definitions_version")
_ASSIGNMENT_DETAIL = ("journey_id", "step_id", "variant", "enrollment_id", "caused_by",
                      "definitions_version")
_DELIVERY_DETAIL = ("action_id", "destination", "channel", "status", "attempt", "http_status",
                    "error", "next_attempt_at")

# Compact JSON as pydantic-core's (a float from 1e16 up reads 1e16, not 1e+16), at half
# its cost per note (its per-call setup) and in exact-size buffers (orjson's are
# over-allocated and shrunk, which fragments the heap of a store that keeps the values:
# several times slower); anything msgspec lacks is converted as pydantic would.
_ENCODER = msgspec.json.Encoder(enc_hook=pydantic_core.to_jsonable_python)
# (prefix, limit) -> up to ``limit`` (key, value) pairs whose key starts with ``prefix``
Scanner = Callable[[bytes, int], list[tuple[bytes, bytes]]]


def _prefix(profile_id: str) -> bytes:
    return NOTES + profile_id.encode() + b"\x00"


def _note(entry_id: str, name: str, at_us: int, summary: str, detail: dict[str, Any]
          ) -> dict[str, Any]:
    return {"event_id": entry_id, "event_name": name, "time_us": at_us,
            "summary": summary[:120], "late": False, "kind": name.split(".")[0],
            "detail": detail}


def notes_of(profile_id: str, decisions: Iterable[dict[str, Any]],
             changes: Iterable[dict[str, Any]],
             assignments: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Timeline notes for an emission's decisions (``Decision.to_timeline()``), audience
    changes and experiment assignments, on profile ``profile_id``'s timeline."""
    notes = [_assignment(a) for a in assignments]
    for d in decisions:
        outcome = d["outcome"]
        summary = f"{d['channel']} {d['action_type']} {outcome}: {d['rule']} ({d['reason']})"
        notes.append({"event_id": d["decision_id"], "event_name": "decision." + outcome,
                      "time_us": _iso_micros(d["decided_at"]), "summary": summary[:120],
                      "late": False, "kind": "decision",
                      "detail": {k: d[k] for k in _DECISION_DETAIL
                                 if d.get(k) not in (None, {})}})
    notes.extend(_change_notes(profile_id, changes))
    return notes


def _change_notes(profile_id: str, changes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``audience.entered`` / ``audience.exited``: several per record, built as
    :func:`_note` would (the dict literal spares its calls)."""
    notes = []
    when, at = None, 0
    for c in changes:
        change, audience = c["change"], c["audience_id"]
        if "caused_by" in c and "definitions_version" in c:  # as emission_of makes them
            detail = {"audience_id": audience, "change": change, "caused_by": c["caused_by"],
                      "definitions_version": c["definitions_version"]}
        else:
            detail = {k: c[k] for k in _CHANGE_DETAIL if k in c}  # emission_of's order
        if c["profile_id"] != profile_id:  # a profile merged into this one
            detail["profile_id"] = c["profile_id"]
        if c["changed_at"] is not when:  # one record's changes share their instant
            when, at = c["changed_at"], micros(c["changed_at"])
        notes.append({"event_id": c["change_id"], "event_name": "audience." + change,
                      "time_us": at, "summary": f"{change} audience {audience}"[:120],
                      "late": False, "kind": "audience", "detail": detail})
    return notes


@lru_cache(maxsize=256)
def _iso_micros(text: str) -> int:
    """µs of an ISO instant: one record's decisions share theirs (its "now")."""
    return micros(datetime.fromisoformat(text))


def _assignment(a: dict[str, Any]) -> dict[str, Any]:
    """``experiment.assigned``: which variant of which split step, and why now."""
    detail = {k: a[k] for k in _ASSIGNMENT_DETAIL if a.get(k) is not None}
    return _note(a["assignment_id"], "experiment.assigned",
                 _iso_micros(a["assigned_at"]),
                 f"journey {a['journey_id']} step {a['step_id']}: variant {a['variant']}",
                 detail)


def delivery_note(outcome: dict[str, Any]) -> dict[str, Any]:
    """A delivery executor's outcome (streams/delivery/attempt.py ``outcome_record``, as
    JSON) as a timeline note: ``delivery.delivered``, ``delivery.retrying``, ..."""
    answered = (f"HTTP {outcome['http_status']}" if outcome.get("http_status") is not None
                else outcome.get("error") or "not sent")
    summary = (f"{outcome['channel']} {outcome['action_type']} to {outcome['destination']}: "
               f"{outcome['status']} after {outcome['attempt']} attempt(s), {answered}")
    detail = {k: outcome[k] for k in _DELIVERY_DETAIL if outcome.get(k) is not None}
    at = micros(datetime.fromisoformat(outcome["occurred_at"]))
    return _note(outcome["outcome_id"], f"delivery.{outcome['status']}", at, summary, detail)


def write_notes(store: Store, profile_id: str, written: int, notes: list[dict[str, Any]],
                limit: int) -> int:
    """Store one record's ``notes`` (at most ``limit`` of them, the newest) in the
    profile's ring, in the slot after the ``written`` ones so far; returns the new count
    (to keep in the activation state)."""
    if not notes or limit <= 0:
        return written
    store[_prefix(profile_id) + b"%06d" % (written % limit)] = _ENCODER.encode(notes[-limit:])
    return written + 1


def read_notes(scan: Scanner, profile_id: str, limit: int) -> list[dict[str, Any]]:
    """The profile's notes, newest first (at most ``limit``); a note met twice (the same
    merged-away profile's notes adopted again) is shown once."""
    notes = {}
    for _, value in scan(_prefix(profile_id), max(limit, 0)):
        stored = json.loads(value)
        for note in stored if isinstance(stored, list) else (stored,):  # (a slot of old)
            notes[note["event_id"]] = note
    ordered = sorted(notes.values(), key=timeline_order, reverse=True)
    return ordered[:limit]


def adopted(notes: list[dict[str, Any]], loser: str) -> list[dict[str, Any]]:
    """A merged-away profile's notes, as the survivor's timeline shows them."""
    return [{**n, "detail": {"profile_id": loser, **n.get("detail", {})}} for n in notes]
