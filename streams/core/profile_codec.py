"""A profile's stored JSON (``Profile.to_json`` and ``Profile.from_json`` in
streams/core/profile.py): fast libraries where they write and read exactly what
pydantic-core does, pydantic-core itself where they would not. The profile stage
reads and writes a profile for every event, hence the fast paths; the bytes written
are pydantic-core's, as they always were. A profile read in the usual form keeps its
timeline as the entries' JSON until something reads it (streams/core/timeline_json.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import orjson
import pydantic_core

from streams.core.timeline_json import ENTRIES

if TYPE_CHECKING:  # profile.py imports this module: no import cycle at run time
    from streams.core.profile import Profile

_DECODE = msgspec.json.Decoder().decode
# What orjson would write differently from pydantic-core goes to ``default``, and fails.
_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)


class _Stored(msgspec.Struct, forbid_unknown_fields=True):
    """A profile as stored in the usual form: every field, the timeline split into its
    entries' JSON. Anything else (a field missing or unknown, NaN) fails to read as
    this and is read whole by :func:`decode`."""

    profile_id: str
    identifiers: dict[str, list[str]]
    traits: dict[str, list[Any]]
    consent: dict[str, list[Any]]
    subscriptions: dict[str, dict[str, list[Any]]]
    order_count: int
    lifetime_value: dict[str, str]
    last_purchase: list[Any] | None
    newest_event_us: int
    last_offset: int
    timeline: list[msgspec.Raw]


_STORED = msgspec.json.Decoder(_Stored).decode


def fields(profile: Profile) -> dict[str, Any]:
    """The profile's fields in order, the timeline decoded (what pydantic-core writes)."""
    data = profile.__dict__
    if ENTRIES not in data:
        return data
    out = {k: v for k, v in data.items() if k != ENTRIES and k != "timeline"}
    out["timeline"] = profile.timeline
    return out


def encode(profile: Profile) -> bytes:
    """pydantic-core's JSON of the fields, in order. orjson writes the same bytes twice
    as fast, but for NaN and infinities (null, not NaN), integers beyond 64 bits,
    dates and subclasses: those raise or leave a ``null`` no None accounts for, and
    pydantic-core writes them, as it always did. A timeline kept as read is written
    as read."""
    data = profile.__dict__
    entries = data.get(ENTRIES)
    if entries is not None:  # the rest encoded and checked alone, the entries as they are
        data = {k: v for k, v in data.items() if k != ENTRIES and k != "timeline"}
    try:
        raw = orjson.dumps(data, default=_not_plain, option=_ORJSON_OPTIONS)
    except TypeError:
        return pydantic_core.to_json(fields(profile))
    if raw.count(b"null") != _nones(profile):
        return pydantic_core.to_json(fields(profile))
    if entries is not None:
        return b"".join((raw[:-1], b',"timeline":[', b",".join(entries), b"]}"))
    return raw


def lazy_fields(raw: bytes) -> dict[str, Any] | None:
    """:func:`decode` for the usual form, the timeline left as its entries' JSON
    (under :data:`ENTRIES`, in the timeline's place); None for any other form."""
    try:
        stored = _STORED(raw)
    except msgspec.MsgspecError:
        return None
    data = msgspec.structs.asdict(stored)
    data[ENTRIES] = data.pop("timeline")
    _restamped(data)
    return data


def decode(raw: bytes) -> dict[str, Any]:
    """The fields of a stored profile, in stored order, with its stamps tuples again."""
    # msgspec reads plain JSON (any integer too) as pydantic-core does, a third faster;
    # what it refuses (NaN, Infinity: pydantic-core writes them) pydantic-core reads.
    try:
        data: dict[str, Any] = _DECODE(raw)
    except msgspec.MsgspecError:
        data = pydantic_core.from_json(raw)
    _restamped(data)
    return data


def _restamped(data: dict[str, Any]) -> None:
    for attrs in (data["traits"], data["consent"], *data["subscriptions"].values()):
        _restamp(attrs)
    if data["last_purchase"] is not None:
        data["last_purchase"] = _stamped(data["last_purchase"])


def _not_plain(value: Any) -> Any:
    raise TypeError(f"not a plain JSON value: {type(value).__name__}")


def _nones(profile: Profile) -> int:
    """The ``null``s a profile's JSON has where a None is expected: the attributes'
    values and the last purchase. Anything else writing ``null`` (a NaN, a None in a
    timeline entry) or the word inside a string makes the count differ."""
    last = profile.last_purchase
    count = 1 if last is None or last[0] is None else 0
    for attrs in (profile.traits, profile.consent, *profile.subscriptions.values()):
        for pair in attrs.values():
            if pair[0] is None:
                count += 1
    return count


def _stamped(pair: list[Any]) -> list[Any]:
    """JSON turns the stamp tuple into a list; restore it so comparisons keep working."""
    stamp = pair[1]
    return [pair[0], (int(stamp[0]), str(stamp[1]))]


def _restamp(attrs: dict[str, list[Any]]) -> None:
    """``_stamped`` on each [value, stamp] of freshly decoded ``attrs``, in place (they
    are nobody else's yet): no new lists and dicts for every profile read."""
    for pair in attrs.values():
        stamp = pair[1]
        pair[1] = (int(stamp[0]), str(stamp[1]))
        if len(pair) > 2:
            del pair[2:]
