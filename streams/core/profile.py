"""One customer profile and the pure functions that change it.

Every attribute is last-writer-wins by event time (ties broken by event id, so the
result never depends on arrival order): an old event never overwrites newer state.
Sums (order count, lifetime value) are commutative, so they are order-free too. An
event older than the newest applied one by more than the ordering window is still
applied wherever it is newest, and is flagged ``late`` on the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from streams.core import timeline_json
from streams.core.profile_codec import decode, encode, lazy_fields
from streams.core.timeline_json import ENTRIES
from streams.records import Envelope

Stamp = tuple[int, str]  # (event time in µs since epoch, event id): a total order
TRAIT_EVENTS = frozenset({"identify", "profile_updated", "traits_updated"})
ID_KINDS = ("customer_id", "email_sha256", "phone_sha256", "anonymous_id")
SUMMARY_CHARS = 120
# Timeline entries keep a few scalar properties so event-history conditions (``sum_of``)
# can read them; bounded so one chatty sender cannot bloat every profile.
TIMELINE_PROPERTIES = 16
PROPERTY_CHARS = 100
# A stored profile longer than this keeps its timeline as read (timeline_json.py). The
# core alone gains from about six entries (1.3 KB in the benchmark: a read, an event and
# a write of a 200-entry profile take a third of the time); with activation, which
# reads the history anyway, the reads of the entries cost about what the core saves up
# to about twenty (`bench.stages` at 2,000 and 200 customers): from there, it pays.
LAZY_FROM_BYTES = 4096


def micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def stamp_of(envelope: Envelope) -> Stamp:
    return (micros(envelope.event_time), envelope.event_id)


@dataclass(frozen=True)
class Profile:
    """A profile as stored (JSON-friendly values); ``apply_event`` returns new ones."""

    profile_id: str
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    # name -> [value, stamp]; consent "purpose:channel" -> [status, stamp]
    traits: dict[str, list[Any]] = field(default_factory=dict)
    consent: dict[str, list[Any]] = field(default_factory=dict)
    # subscription id -> attribute -> [value, stamp]
    subscriptions: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    order_count: int = 0
    lifetime_value: dict[str, str] = field(default_factory=dict)  # currency -> Decimal str
    last_purchase: list[Any] | None = None  # [order id, stamp]
    newest_event_us: int = 0
    last_offset: int = -1  # offset (core topic) of the last event applied: replay guard
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def evolve(self, **changes: Any) -> Profile:
        """``dataclasses.replace`` without its per-field machinery (it was a fifth of the
        pure core's time per event); Profile has no ``__post_init__`` to run."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"Profile has no field(s) {sorted(unknown)}")
        return self.replaced(changes)

    def replaced(self, changes: dict[str, Any]) -> Profile:
        """``evolve`` for callers whose field names are known good (no check); the
        timeline may be given as entries' JSON (``ENTRIES``: streams/core/timeline_json.py)."""
        new = object.__new__(Profile)
        data = new.__dict__
        data.update(self.__dict__)
        data.update(changes)
        if "timeline" in changes:  # the entries kept as read no longer are the timeline
            data.pop(ENTRIES, None)
        elif ENTRIES in changes:
            data.pop("timeline", None)
        return new

    if not TYPE_CHECKING:  # hidden from mypy, which would let any attribute through
        def __getattr__(self, name: str) -> Any:
            """Only for what the instance lacks: the timeline of a profile read from
            storage, decoded from its entries' JSON on first use (and kept)."""
            entries = self.__dict__.get(ENTRIES) if name == "timeline" else None
            if entries is None:
                raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
            timeline = self.__dict__["timeline"] = timeline_json.decode(entries)
            return timeline

    def to_json(self) -> bytes:
        """The stored JSON (streams/core/profile_codec.py writes it)."""
        return encode(self)

    @classmethod
    def from_json(cls, raw: bytes) -> Profile:
        """The stored profile; in the usual form, and past a few entries, its timeline
        stays undecoded until read."""
        data = lazy_fields(raw) if len(raw) > LAZY_FROM_BYTES else None
        if data is not None:
            new = object.__new__(cls)
            new.__dict__.update(data)
            return new
        data = decode(raw)
        if list(data) != _FIELD_ORDER:  # older or unusual state: let __init__ check it
            return cls(**data)
        # Every field, in order: skip the frozen __init__'s per-field setattr.
        new = object.__new__(cls)
        new.__dict__.update(data)
        return new


_FIELD_ORDER = [f.name for f in fields(Profile)]
_FIELDS = frozenset(_FIELD_ORDER)


def _lww(current: list[Any] | None, value: Any, stamp: Stamp) -> list[Any] | None:
    """The new [value, stamp] if it is newer than ``current``, else None (keep current)."""
    if current is not None and tuple(current[1]) >= stamp:
        return None
    return [value, stamp]


def _merge_ids(have: dict[str, list[str]], envelope: Envelope) -> dict[str, list[str]]:
    """``have`` with the event's identifiers added; ``have`` itself when it knows them all
    (most events), as profiles are never changed in place."""
    ids = envelope.identifiers
    cid, em, ph, anon = ids.customer_id, ids.email_sha256, ids.phone_sha256, ids.anonymous_id
    if ((not cid or cid in have.get("customer_id", ())) and (not em or em in have.get(
            "email_sha256", ())) and (not ph or ph in have.get("phone_sha256", ()))
            and (not anon or anon in have.get("anonymous_id", ()))):
        return have  # most events: every identifier known, without the loop below
    out: dict[str, list[str]] | None = None
    # ID_KINDS' order, spelled out: getattr by name cost more than the rest of this.
    for kind, value in (("customer_id", cid), ("email_sha256", em), ("phone_sha256", ph),
                        ("anonymous_id", anon)):
        if value and value not in (have if out is None else out).get(kind, ()):
            if out is None:
                out = {k: list(v) for k, v in have.items()}
            out[kind] = sorted([*out.get(kind, []), value])
    return have if out is None else out


def _set_attrs(
    current: dict[str, list[Any]], updates: dict[str, Any], stamp: Stamp
) -> dict[str, list[Any]]:
    out = dict(current)
    for name, value in updates.items():
        newer = _lww(out.get(name), value, stamp)
        if newer is not None:
            out[name] = newer
    return out


def set_traits(profile: Profile, updates: dict[str, Any], stamp: Stamp) -> Profile:
    """``profile`` with traits set last-writer-wins at ``stamp``, as a trait event sets
    them (activation's data actions write this way: streams/activation/writes.py)."""
    return profile.evolve(traits=_set_attrs(profile.traits, updates, stamp))


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _subscription_updates(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    if name == "subscription_started":
        updates = {"status": "active", "plan": payload.get("plan"),
                   "start_date": _iso(payload.get("start_date")), "cancel_date": None}
        if payload.get("contract_end_date") is not None:
            updates["contract_end_date"] = _iso(payload["contract_end_date"])
        return updates
    if name == "subscription_canceled":
        return {"status": "canceled", "cancel_date": _iso(payload.get("cancel_date")),
                "cancel_reason": payload.get("reason")}
    if name == "contract_renewed":
        return {"status": "active", "contract_end_date": _iso(payload.get("new_end_date")),
                "cancel_date": None}
    return {}


def _payload_changes(profile: Profile, envelope: Envelope, stamp: Stamp) -> dict[str, Any]:
    """The fields an event's payload (or trait properties) changes, as ``evolve`` takes them."""
    name, payload = envelope.event_name, envelope.payload or {}
    if name == "purchase_completed" and payload:
        value = Decimal(payload["order_value"])
        currency = str(payload.get("currency", "")).upper()
        ltv = dict(profile.lifetime_value)
        ltv[currency] = str(Decimal(ltv.get(currency, "0")) + value)
        last = _lww(profile.last_purchase, payload.get("order_id"), stamp)
        return {"order_count": profile.order_count + 1, "lifetime_value": ltv,
                "last_purchase": last or profile.last_purchase}
    if name == "consent_updated" and payload:
        return {"consent": _set_attrs(profile.consent,
                                      {payload["consent_type"]: payload["status"]}, stamp)}
    updates = _subscription_updates(name, payload)
    if updates:
        sid = payload.get("subscription_id") or "default"
        subs = dict(profile.subscriptions)
        subs[sid] = _set_attrs(subs.get(sid, {}), updates, stamp)
        return {"subscriptions": subs}
    if name in TRAIT_EVENTS:
        return {"traits": _set_attrs(profile.traits, envelope.properties, stamp)}
    return {}


def summarize(envelope: Envelope) -> str:
    """A short, human-readable line for the timeline."""
    p = envelope.payload or {}
    name = envelope.event_name
    if name == "purchase_completed" and p:
        text = f"order {p.get('order_id')}: {p.get('order_value')} {p.get('currency')}"
    elif name == "consent_updated" and p:
        text = f"consent {p.get('consent_type')} {p.get('status')}"
    elif name == "subscription_started" and p:
        text = f"subscription {p.get('plan')} from {_iso(p.get('start_date'))}"
    elif name == "subscription_canceled" and p:
        text = f"subscription canceled from {_iso(p.get('cancel_date'))}"
    elif name == "contract_renewed" and p:
        text = f"contract renewed until {_iso(p.get('new_end_date'))}"
    else:
        props = ", ".join(f"{k}={v}" for k, v in sorted(envelope.properties.items())[:3])
        text = f"{name}" + (f" ({props})" if props else "")
    return text[:SUMMARY_CHARS]


def timeline_properties(envelope: Envelope) -> dict[str, Any]:
    """Scalar payload fields and properties (payload wins), JSON-safe and bounded."""
    merged = {**envelope.properties, **(envelope.payload or {})}
    out: dict[str, Any] = {}
    for name in sorted(merged)[:TIMELINE_PROPERTIES]:
        value = merged[name]
        # The common types first; no type is two of these, so the order is free.
        if isinstance(value, str):
            value = value[:PROPERTY_CHARS]
        elif isinstance(value, (bool, int, float)):
            pass
        elif isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, date):
            value = value.isoformat()
        else:
            continue
        out[name] = value
    return out


def timeline_order(entry: dict[str, Any]) -> tuple[int, str]:
    """The timeline's sort key (newest first is this, reversed): time, then event id."""
    return entry["time_us"], entry["event_id"]


# timeline_order in C: the timeline is sorted on every event, a key call per entry.
_TIMELINE_ORDER = itemgetter("time_us", "event_id")
_EVENT_ID = itemgetter("event_id")


def insert_timeline(
    timeline: list[dict[str, Any]], entry: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    """Timeline newest first by (time, event id), bounded to ``limit`` entries. Every
    timeline is one this returned, so in that order: an entry newer than its first (most
    events) goes in front without the sort (a key per entry: tens of µs at 200)."""
    event_id = entry["event_id"]
    newest = not timeline or (entry["time_us"], event_id) > _TIMELINE_ORDER(timeline[0])
    if event_id in map(_EVENT_ID, timeline):  # rare: the same event again
        rest = [e for e in timeline if e["event_id"] != event_id]
    else:
        rest = timeline
    if newest and limit > 0:
        return [entry, *rest[:limit - 1]]
    entries = [*rest, entry]
    entries.sort(key=_TIMELINE_ORDER, reverse=True)
    return entries[:limit]


def apply_event(
    profile: Profile, envelope: Envelope, ordering_window: timedelta, timeline_limit: int
) -> Profile:
    """``profile`` with ``envelope`` applied: attribute LWW by event time, late events flagged."""
    stamp = stamp_of(envelope)
    late = stamp[0] < profile.newest_event_us - int(ordering_window.total_seconds() * 1e6)
    entry = {"event_id": envelope.event_id, "event_name": envelope.event_name,
             "time_us": stamp[0], "summary": summarize(envelope), "late": late,
             "properties": timeline_properties(envelope)}
    changes = _payload_changes(profile, envelope, stamp)
    changes["identifiers"] = _merge_ids(profile.identifiers, envelope)
    changes["newest_event_us"] = max(profile.newest_event_us, stamp[0])
    entries = profile.__dict__.get(ENTRIES)  # kept as read: most events go in front
    front = None if entries is None else timeline_json.prepend(entries, entry,
                                                               timeline_limit)
    if front is not None:
        changes[ENTRIES] = front
    else:
        changes["timeline"] = insert_timeline(profile.timeline, entry, timeline_limit)
    return profile.replaced(changes)


def merge_maps(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out = dict(a)
    for name, (value, stamp) in b.items():
        newer = _lww(out.get(name), value, tuple(stamp))
        if newer is not None:
            out[name] = newer
    return out


def merge_profiles(winner: Profile, loser: Profile, timeline_limit: int) -> Profile:
    """The union of two profiles of one customer, kept under ``winner``'s id."""
    ids = {k: list(v) for k, v in winner.identifiers.items()}
    for kind, values in loser.identifiers.items():
        ids[kind] = sorted(set(ids.get(kind, [])) | set(values))
    subs = dict(winner.subscriptions)
    for sid, attrs in loser.subscriptions.items():
        subs[sid] = merge_maps(subs.get(sid, {}), attrs)
    ltv = dict(winner.lifetime_value)
    for cur, amount in loser.lifetime_value.items():
        ltv[cur] = str(Decimal(ltv.get(cur, "0")) + Decimal(amount))
    last = winner.last_purchase
    if loser.last_purchase is not None:
        last = _lww(last, loser.last_purchase[0], tuple(loser.last_purchase[1])) or last
    timeline = list(winner.timeline)
    for entry in loser.timeline:
        timeline = insert_timeline(timeline, entry, timeline_limit)
    return winner.evolve(
        identifiers=ids, traits=merge_maps(winner.traits, loser.traits),
        consent=merge_maps(winner.consent, loser.consent), subscriptions=subs,
        order_count=winner.order_count + loser.order_count, lifetime_value=ltv,
        last_purchase=last, newest_event_us=max(winner.newest_event_us, loser.newest_event_us),
        last_offset=max(winner.last_offset, loser.last_offset),
        timeline=timeline,
    )


def to_api(profile: Profile) -> dict[str, Any]:
    """The JSON the profile API returns (times as ISO 8601, stamps hidden)."""
    def plain(m: dict[str, list[Any]]) -> dict[str, Any]:
        return {k: v[0] for k, v in sorted(m.items())}

    return {
        "profile_id": profile.profile_id,
        "identifiers": profile.identifiers,
        "traits": plain(profile.traits),
        "consent": plain(profile.consent),
        "subscriptions": {sid: plain(a) for sid, a in sorted(profile.subscriptions.items())},
        "aggregates": {
            "order_count": profile.order_count,
            "lifetime_value": profile.lifetime_value,
            "last_purchase": None if profile.last_purchase is None else {
                "order_id": profile.last_purchase[0],
                "time": from_micros(profile.last_purchase[1][0]).isoformat()},
        },
        "last_event_time": from_micros(profile.newest_event_us).isoformat()
        if profile.newest_event_us else None,
    }


def timeline_page(profile: Profile, offset: int, limit: int,
                  notes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One page of the timeline: the profile's events and ``notes``, activation's
    decisions and audience moves (streams/activation/notes.py), newest first (``kind``
    tells them apart; ``detail`` says which rule, journey and definitions)."""
    entries = profile.timeline
    if notes:
        entries = sorted([*entries, *notes], key=timeline_order, reverse=True)
    items = [
        {"event_id": e["event_id"], "event_name": e["event_name"],
         "kind": e.get("kind", "event"),
         "time": from_micros(e["time_us"]).isoformat(), "summary": e["summary"],
         "late": e.get("late", False),
         **({"detail": e["detail"]} if "detail" in e else {})}
        for e in entries[offset: offset + limit]
    ]
    nxt = offset + limit if offset + limit < len(entries) else None
    return {"profile_id": profile.profile_id, "items": items, "next_offset": nxt,
            "total": len(entries)}
