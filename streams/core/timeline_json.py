"""A stored profile's timeline kept as the JSON it was read as, until something reads it.

The timeline is most of a profile's bytes (about three quarters in the benchmark, and
up to ``ACTIVATION_PROFILE_TIMELINE_LIMIT`` entries for a long-lived customer), and the
profile stage reads and writes the whole profile for every event. Most events only put
one entry in front of it, so the profile stage keeps a read profile's timeline as its
entries' JSON (:data:`ENTRIES`, a list of one ``bytes``-like value per entry, newest
first) and writes them back as they were read, with the new entry in front:

- reading a profile splits the timeline into entries without building them
  (:func:`streams.core.profile_codec.lazy_fields`);
- :func:`prepend` puts a new event in front when it is newer than the first entry and
  its id is certainly not in the timeline, and trims to the limit; anything else (a
  late event, a possible duplicate) takes the general path on decoded entries;
- ``Profile.timeline`` decodes the entries on first use (activation, merges, the API);
- writing a profile embeds the entries' bytes as they are (``orjson.Fragment``).

The bytes written are the ones the general path writes: each entry is encoded alone as
the whole profile would encode it (tests/unit/core/test_timeline_json.py checks both).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pydantic_core

ENTRIES = "_timeline_entries"  # a Profile's __dict__ key while its timeline is not decoded
Entries = list[Any]  # msgspec.Raw (as read) or bytes (written since): buffers of JSON


class _Head(msgspec.Struct):
    """The order key of an entry (``streams.core.profile.timeline_order``)."""

    event_id: str
    time_us: int


_HEAD = msgspec.json.Decoder(_Head).decode
_DECODE = msgspec.json.Decoder().decode
_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
            | orjson.OPT_PASSTHROUGH_SUBCLASS)


def joined(entries: Entries) -> bytes:
    """The timeline's JSON array."""
    return b"[" + b",".join(entries) + b"]"


def decode(entries: Entries) -> list[dict[str, Any]]:
    """The entries as dicts (what ``Profile.timeline`` holds)."""
    raw = joined(entries)
    try:
        timeline: list[dict[str, Any]] = _DECODE(raw)
    except msgspec.MsgspecError:  # NaN or Infinity, which pydantic-core writes and reads
        timeline = pydantic_core.from_json(raw)
    return timeline


def first(entries: Entries) -> dict[str, Any]:
    """The newest entry alone, decoded (``entries`` not empty)."""
    return decode(entries[:1])[0]


def encode_entry(entry: dict[str, Any]) -> bytes:
    """One entry's JSON as the profile's encoder writes it inside the timeline:
    pydantic-core's bytes, with orjson where they are the same (no ``null``: an entry
    holds no None, and orjson writes one for NaN and infinities)."""
    try:
        raw = orjson.dumps(entry, default=_not_plain, option=_OPTIONS)
    except TypeError:
        return pydantic_core.to_json(entry)
    return pydantic_core.to_json(entry) if b"null" in raw else raw


def prepend(entries: Entries, entry: dict[str, Any], limit: int) -> Entries | None:
    """``insert_timeline`` on undecoded entries for its common case: ``entry`` newer
    than the first and its id nowhere in the timeline. None: take the general path."""
    if limit <= 0:
        return None
    event_id = entry["event_id"]
    if entries:
        try:
            head = _HEAD(entries[0])
        except msgspec.MsgspecError:
            return None
        if (entry["time_us"], event_id) <= (head.time_us, head.event_id) \
                or may_hold(entries, event_id):
            return None
    return [encode_entry(entry), *entries[:limit - 1]]


def may_hold(entries: Entries, event_id: str) -> bool:
    """False only if no entry has this id: it is searched as its entry spells it, so
    finding it anywhere (in a property too) says "maybe"."""
    spelled = orjson.dumps(event_id)
    if spelled[1:-1] != event_id.encode():  # escaped in JSON: it could be spelled otherwise
        return True
    return b'"event_id":' + spelled in b",".join(entries)


def dropped(new: Entries, old: Entries) -> Entries | None:
    """When ``new`` is ``old`` with one entry put in front and trimmed (what
    :func:`prepend` does), the entries of ``old`` trimmed off; None otherwise."""
    if not new or new[1:] != old[:len(new) - 1]:
        return None
    return old[len(new) - 1:]


def _not_plain(value: Any) -> Any:
    raise TypeError(f"not a plain JSON value: {type(value).__name__}")
