"""The typed view of a profile that audiences, journeys and governance evaluate.

Only :func:`facts_from_profile` knows the profile's storage format, so a change there
touches one function. Event history comes from the profile's bounded timeline: an
event-history condition can only see the newest ``timeline_limit`` entries, and each
entry keeps at most 16 scalar properties (``streams.core.profile.timeline_properties``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import msgspec

from streams.core.profile import Profile, from_micros
from streams.core.timeline_json import ENTRIES, Entries, joined

_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration without years and months (their length varies): -P7D, PT36H, P2W."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None or text.strip() in ("P", "-P", "PT", "-PT") or text.strip().endswith("T"):
        raise ValueError(
            f"not an ISO 8601 duration like P30D, PT12H or -P7D (no years/months): {text!r}"
        )
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items() if k != "sign"}
    delta = timedelta(weeks=parts["w"], days=parts["d"], hours=parts["h"],
                      minutes=parts["m"], seconds=parts["s"])
    return -delta if match.group("sign") else delta


def as_datetime(value: Any) -> datetime | None:
    """A date-like fact as an aware datetime; a plain date means its midnight in UTC.

    Dates from billing are calendar days without a zone; UTC midnight keeps every worker
    in agreement (a customer's own zone only matters for quiet hours).
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, str) and value:
        return _parsed(value)
    return None


@lru_cache(maxsize=8192)
def _parsed(value: str) -> datetime | None:
    """A date-like string's instant, parsed once: the same contract end date or start
    date is read by several conditions on every event of a profile."""
    try:
        return as_datetime(datetime.fromisoformat(value)) if "T" in value else \
            as_datetime(date.fromisoformat(value))
    except ValueError:
        return None


def as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def active_subscription(subscriptions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The active subscription that ends last (no end date counts as latest), {} if none."""
    active = [s for s in subscriptions.values() if s.get("status") == "active"]
    if not active:
        return {}
    far = datetime.max.replace(tzinfo=UTC)
    return max(active, key=lambda s: as_datetime(s.get("contract_end_date")) or far)


def canceled_subscription(subscriptions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The canceled subscription canceled last (no cancel date counts as earliest), {} if
    none: what win-back reads once a customer has no active subscription left."""
    canceled = [s for s in subscriptions.values() if s.get("status") == "canceled"]
    if not canceled:
        return {}
    early = datetime.min.replace(tzinfo=UTC)
    return max(canceled, key=lambda s: as_datetime(s.get("cancel_date")) or early)


@dataclass(frozen=True)
class HistoryEvent:
    event_id: str
    name: str
    time: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    """What activation may know about one customer at one instant."""

    profile_id: str
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, str] = field(default_factory=dict)  # "purpose:channel" -> status
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_count: int = 0
    lifetime_value: dict[str, Decimal] = field(default_factory=dict)
    last_purchase_at: datetime | None = None
    events: tuple[HistoryEvent, ...] = ()  # newest first, bounded (see module doc)

    def __post_init__(self) -> None:
        # Derived once per Facts (they are frozen): every audience condition asks again.
        # Eager, not cached_property: its lookup cost more than the work on this path.
        by_name: dict[str, list[HistoryEvent]] = {}
        for event in self.events:
            by_name.setdefault(event.name, []).append(event)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_subscription", active_subscription(self.subscriptions))
        object.__setattr__(self, "_canceled", canceled_subscription(self.subscriptions))

    def subscription(self) -> dict[str, Any]:
        """The active subscription that ends last (no end date counts as latest)."""
        result: dict[str, Any] = self._subscription  # type: ignore[attr-defined]
        return result

    def canceled_subscription(self) -> dict[str, Any]:
        """The canceled subscription canceled last ({} if none)."""
        result: dict[str, Any] = self._canceled  # type: ignore[attr-defined]
        return result

    def named(self, name: str) -> list[HistoryEvent]:
        """The history events called ``name``, newest first."""
        found: list[HistoryEvent] = self._by_name.get(name, [])  # type: ignore[attr-defined]
        return found

    def resolve(self, path: str) -> Any:
        """A value by path: ``traits.x`` (or bare ``x``), ``subscription.x`` (the active
        one), ``canceled_subscription.x`` (the last canceled), ``consent.purpose:channel``,
        ``aggregates.order_count|last_purchase_at``, ``aggregates.lifetime_value.EUR``.
        Missing values are None."""
        return getter(path)(self)


@lru_cache(maxsize=4096)
def getter(path: str) -> Callable[[Facts], Any]:
    """:meth:`Facts.resolve` for one path, the path parsed once (compiled conditions
    keep the getter of each path they read)."""
    head, _, rest = path.partition(".")
    if not rest:
        return lambda f: f.traits.get(path)
    if head == "traits":
        return lambda f: f.traits.get(rest)
    if head == "subscription":
        return lambda f: f.subscription().get(rest)
    if head == "canceled_subscription":
        return lambda f: f.canceled_subscription().get(rest)
    if head == "consent":
        return lambda f: f.consent.get(rest)
    if head == "aggregates":
        if rest.startswith("lifetime_value."):
            currency = rest.removeprefix("lifetime_value.")
            return lambda f: f.lifetime_value.get(currency)
        if rest == "order_count":
            return lambda f: f.order_count
        if rest == "last_purchase_at":
            return lambda f: f.last_purchase_at
    return lambda f: None


KNOWN_ROOTS = ("traits", "subscription", "canceled_subscription", "consent", "aggregates")


_new = object.__new__
# A timeline entry's stamp -> its instant: a profile's whole history is read again on
# each of its events, and an instant (immutable) is shared as well as made again.
_INSTANTS: dict[Any, datetime] = {}
_INSTANTS_KEPT = 1 << 16  # about the histories of the last few thousand events


def _instant(stamp: Any) -> datetime:
    """``from_micros(int(stamp))``, inlined and remembered."""
    found = _INSTANTS.get(stamp)
    if found is None:
        if len(_INSTANTS) >= _INSTANTS_KEPT:
            _INSTANTS.clear()
        found = _INSTANTS[stamp] = datetime.fromtimestamp(int(stamp) / 1_000_000, tz=UTC)
    return found


def _history(entry: dict[str, Any]) -> HistoryEvent:
    """A timeline entry as a :class:`HistoryEvent`, without the frozen dataclass's
    ``__init__`` (a setattr per field): every event of the history, on every event."""
    event = _new(HistoryEvent)
    props = entry.get("properties")
    stamp = entry["time_us"]
    when = _INSTANTS.get(stamp)  # _instant's lookup, inlined: no call when remembered
    event.__dict__.update(event_id=entry["event_id"], name=entry["event_name"],
                          time=_instant(stamp) if when is None else when,
                          properties=dict(props) if props else {})
    return event


class _Entry(msgspec.Struct):
    """What the history reads of a timeline entry."""

    event_id: str
    event_name: str
    time_us: int
    kind: str = "event"
    properties: dict[str, Any] = {}


_ENTRIES = msgspec.json.Decoder(list[_Entry]).decode


def _history_of(entries: Entries) -> list[HistoryEvent] | None:
    """The history of a timeline kept as read (streams/core/timeline_json.py), its
    entries read straight into what the history needs (a quarter cheaper than decoding
    the timeline's dicts and building the events from them); None if they do not read
    as that (then the decoded timeline is read as it always was)."""
    try:
        read = _ENTRIES(joined(entries))
    except msgspec.MsgspecError:
        return None
    history: list[HistoryEvent] = []
    instants = _INSTANTS
    for entry in read:
        if entry.kind != "event":  # not activation's notes
            continue
        event = _new(HistoryEvent)
        stamp = entry.time_us
        when = instants.get(stamp)
        event.__dict__.update(event_id=entry.event_id, name=entry.event_name,
                              time=_instant(stamp) if when is None else when,
                              properties=entry.properties)
        history.append(event)
    return history


def _events_of(profile: Profile) -> list[HistoryEvent]:
    entries = profile.__dict__.get(ENTRIES)
    history = None if entries is None else _history_of(entries)
    if history is not None:
        return history
    return [_history(entry) for entry in profile.timeline
            if entry.get("kind", "event") == "event"]  # not activation's notes


def facts_from_profile(profile: Profile) -> Facts:
    """The one adapter from the profile's stored format (``[value, stamp]`` pairs)."""
    # One pass over the history builds its index by name (what ``__post_init__`` would
    # derive from it again).
    history = _events_of(profile)
    by_name: dict[str, list[HistoryEvent]] = {}
    for event in history:
        found = by_name.get(event.name)
        if found is None:
            by_name[event.name] = [event]
        else:
            found.append(event)
    last = profile.last_purchase
    subscriptions = {sid: {k: v[0] for k, v in attrs.items()}
                     for sid, attrs in profile.subscriptions.items()}
    facts = _new(Facts)  # every field given: the frozen dataclass's setattrs spared
    facts.__dict__.update(
        profile_id=profile.profile_id,
        identifiers={k: list(v) for k, v in profile.identifiers.items()},
        traits={k: v[0] for k, v in profile.traits.items()},
        consent={k: str(v[0]) for k, v in profile.consent.items()},
        subscriptions=subscriptions,
        order_count=profile.order_count,
        lifetime_value={c: Decimal(a) for c, a in profile.lifetime_value.items()},
        last_purchase_at=None if last is None else from_micros(int(last[1][0])),
        events=tuple(history),
        _by_name=by_name,
        _subscription=active_subscription(subscriptions) if subscriptions else {},
        _canceled=canceled_subscription(subscriptions) if subscriptions else {},
    )
    return facts
