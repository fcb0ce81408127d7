"""A profile's stored JSON (``Profile.to_json`` and ``Profile.from_json`` in
streams/core/profile.py): fast libraries where they write and read exactly what
pydantic-core does, pydantic-core itself where they would not. The profile stage
reads and writes a profile for every event, hence the fast paths; the bytes written
are pydantic-core's, as they always were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import orjson
import pydantic_core

if TYPE_CHECKING:  # profile.py imports this module: no import cycle at run time
    from streams.core.profile import Profile

_DECODE = msgspec.json.Decoder().decode
# What orjson would write differently from pydantic-core goes to ``default``, and fails.
_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)


def encode(profile: Profile) -> bytes:
    """pydantic-core's JSON of the fields, in order. orjson writes the same bytes twice
    as fast, but for NaN and infinities (null, not NaN), integers beyond 64 bits,
    dates and subclasses: those raise or leave a ``null`` no None accounts for, and
    pydantic-core writes them, as it always did."""
    try:
        raw = orjson.dumps(profile.__dict__, default=_not_plain, option=_ORJSON_OPTIONS)
    except TypeError:
        return pydantic_core.to_json(profile.__dict__)
    if raw.count(b"null") != _nones(profile):
        return pydantic_core.to_json(profile.__dict__)
    return raw


def decode(raw: bytes) -> dict[str, Any]:
    """The fields of a stored profile, in stored order, with its stamps tuples again."""
    # msgspec reads plain JSON (any integer too) as pydantic-core does, a third faster;
    # what it refuses (NaN, Infinity: pydantic-core writes them) pydantic-core reads.
    try:
        data: dict[str, Any] = _DECODE(raw)
    except msgspec.MsgspecError:
        data = pydantic_core.from_json(raw)
    for attrs in (data["traits"], data["consent"], *data["subscriptions"].values()):
        _restamp(attrs)
    if data["last_purchase"] is not None:
        data["last_purchase"] = _stamped(data["last_purchase"])
    return data


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
