"""The right to be forgotten, over the stages' stores. Pure: the agents wire it.

An erasure names one identifier (``cid:<customer id>``, ``em:<sha256>``, ...). It is a
command on the identity stage's topic (``scripts/erase``, or the worker's admin API):

1. **Identity stage** (:func:`erase_identity`): the profile the identifier resolves to,
   every identifier key it owns (``i:``, ``k:``) and every redirect into it (``r:``,
   profiles merged into it) are deleted. In ``suppress_with_delete`` mode (the default)
   each of those keys gets a suppression marker (``x:<key>``), so a later event
   carrying one is dropped, here and at screening, instead of creating the customer
   again. It forwards ``erase`` to the profile's partition and writes the audit record.
2. **Profile stage** (:func:`erase_profile`): the profile, its merge history, undo
   records, activation state, held actions, timer and timeline notes are deleted; the
   same is forwarded for every profile merged into it (their retained copies live on
   their own partitions). Downstream services get an ``erase_profile`` command on every
   action topic.

Deleting a key of a state store writes a tombstone to its changelog (tables/state.py),
so a store rebuilt from the changelog restores nothing of it. What stays: dedup
markers (event id -> profile id, no identifiers) until ``ACTIVATION_DEDUP_WINDOW``
expires them, and the raw events on the ingestion topic until its retention (14 days)
deletes them. Modes follow Segment's regulation types: ``delete`` (a later event may
create the customer again) and ``suppress_with_delete``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from streams.core.identity_stage import SUPPRESSED
from streams.core.pipeline import Store, canonical_id, merge_history
from streams.core.profile import micros

Mode = Literal["delete", "suppress_with_delete"]
MODES: tuple[Mode, ...] = ("delete", "suppress_with_delete")
# (prefix, limit) -> up to ``limit`` (key, value) pairs whose key starts with ``prefix``
Scan = Callable[[bytes, int], list[tuple[bytes, bytes]]]
SCAN_LIMIT = 10_000_000  # erasures are rare: a whole key family is read when needed


@dataclass(frozen=True)
class Request:
    request_id: str
    identifier: str  # an identifier key: "cid:...", "em:<sha256>", "ph:<sha256>", "anon:..."
    mode: Mode
    requested_by: str
    requested_at: datetime

    def to_json(self) -> bytes:
        return json.dumps({"request_id": self.request_id, "identifier": self.identifier,
                           "mode": self.mode, "requested_by": self.requested_by,
                           "requested_at": self.requested_at.isoformat()}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Request:
        doc = json.loads(raw)
        if doc["mode"] not in MODES:
            raise ValueError(f"unknown erasure mode {doc['mode']!r}")
        return cls(str(doc["request_id"]), str(doc["identifier"]), doc["mode"],
                   str(doc["requested_by"]), datetime.fromisoformat(doc["requested_at"]))


@dataclass(frozen=True)
class Erased:
    """What the identity stage did: the profile to erase next (None: nothing known),
    the keys suppressed from now on, and the audit record (no personal data)."""

    profile_id: str | None
    suppressed: tuple[str, ...]
    audit: dict[str, Any] = field(default_factory=dict)


def is_suppressed(store: Store, key: str) -> bool:
    return store.get(SUPPRESSED + key.encode()) is not None


def _merged_into(scan: Scan, store: Store, profile_id: str) -> list[str]:
    """Profiles whose redirect chain ends at ``profile_id`` (merged into it)."""
    return sorted(key[2:].decode() for key, _ in scan(b"r:", SCAN_LIMIT)
                  if canonical_id(store, key[2:].decode()) == profile_id)


def erase_identity(store: Store, scan: Scan, request: Request, now: datetime) -> Erased:
    raw = store.get(b"i:" + request.identifier.encode())
    profile_id = None if raw is None else canonical_id(store, raw.decode())
    keys: list[str] = [request.identifier]
    merged: list[str] = []
    if profile_id is not None:
        owned = store.get(b"k:" + profile_id.encode())
        keys = sorted({request.identifier, *(json.loads(owned) if owned else [])})
        merged = _merged_into(scan, store, profile_id)
        for key in keys:
            _delete(store, b"i:" + key.encode())
        _delete(store, b"k:" + profile_id.encode())
        for loser in merged:
            _delete(store, b"r:" + loser.encode())
    suppressed = tuple(keys) if request.mode == "suppress_with_delete" else ()
    for key in suppressed:
        store[SUPPRESSED + key.encode()] = json.dumps(
            {"request_id": request.request_id, "at_us": micros(now)}).encode()
    audit = audit_of(request, now, profile_id is not None, len(keys), 1 + len(merged),
                     len(suppressed))
    return Erased(profile_id, suppressed, audit)


def audit_of(request: Request, now: datetime, found: bool, identifiers: int, profiles: int,
             suppressed: int) -> dict[str, Any]:
    """The audit record of an erasure (``ops.erasures``): counts, never identifiers."""
    return {"request_id": request.request_id, "requested_by": request.requested_by,
            "requested_at": request.requested_at.isoformat(), "processed_at": now.isoformat(),
            "mode": request.mode, "found": found,
            "identifiers_erased": identifiers if found else 0,
            "profiles_erased": profiles if found else 0,
            "identifiers_suppressed": suppressed}


def _delete(store: Store, key: bytes) -> None:
    if store.get(key) is not None:
        del store[key]


PROFILE_FAMILIES = (b"p:", b"r:", b"h:", b"u:", b"a:", b"w:")


def erase_profile(store: Store, scan: Scan, profile_id: str) -> list[str]:
    """Delete everything the partition keeps of ``profile_id``; returns the profiles
    merged into it, whose partitions must erase them too."""
    merged = sorted({r.loser for r in merge_history(store, profile_id)} - {profile_id})
    pid = profile_id.encode()
    timer = store.get(b"w:" + pid)
    if timer is not None:
        _delete(store, timer)  # the t:<wake>:<profile> key the pointer names
    for family in PROFILE_FAMILIES:
        _delete(store, family + pid)
    for key, _ in scan(b"n:" + pid + b"\x00", SCAN_LIMIT):  # timeline notes
        _delete(store, key)
    return merged


def erasure_commands(profile_id: str, request_id: str, identifiers: dict[str, str | None],
                     channels: Iterable[str], now: datetime) -> list[dict[str, Any]]:
    """An ``erase_profile`` ActionCommand per channel, so downstream deletes too (the
    identifiers are the hashed ones the profile had; the payload names the request)."""
    def action_id(channel: str) -> str:
        return hashlib.sha256(f"erase\x1f{request_id}\x1f{profile_id}\x1f{channel}"
                              .encode()).hexdigest()

    return [{"action_id": action_id(channel),
             "channel": channel, "action_type": "erase_profile", "profile_id": profile_id,
             "identifiers": identifiers, "payload": {"erasure_request_id": request_id},
             "journey_id": None, "journey_version": None, "step_id": None,
             "decision_id": request_id, "caused_by_event_id": None, "created_at": now,
             "not_before": None} for channel in channels]
