"""Segment-compatible payloads (``/v1/track``, ``/v1/identify``, ``/v1/batch``) mapped to ours.

The mapping is deliberately small and lossless for what the platform uses:

* ``messageId`` -> ``event_id`` (Segment's idempotency key)
* ``userId`` -> ``customer_id``; ``anonymousId`` -> ``anonymous_id``
* ``traits.email`` / ``context.traits.email`` (and ``phone``) -> hashed identifiers;
  they never reach ``properties`` in clear
* ``timestamp``, else ``originalTimestamp``, else the time the gateway received it
* track: ``event`` ("Order Completed") -> snake_case name (``order_completed``),
  ``properties`` kept; identify: event name ``identify``, traits as properties

Other Segment fields (``context``, ``integrations``, ``sentAt``...) are ignored,
as Segment's own API tolerates them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ingest.errors import InvalidEvent, Problem

_NON_WORD = re.compile(r"[^a-z0-9]+")
_PII_TRAITS = ("email", "phone")
IDENTIFY_EVENT = "identify"


def snake_case(name: str) -> str:
    """'Order Completed' -> 'order_completed'; already snake_case names are unchanged."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return _NON_WORD.sub("_", spaced.lower()).strip("_")


def map_call(raw: Any, kind: str, now: datetime, path: str = "$") -> dict[str, Any]:
    """One Segment call as a gateway event dict; raises :class:`InvalidEvent`."""
    problems: list[Problem] = []
    event = collect_call(raw, kind, now, path, problems)
    if problems or event is None:
        raise InvalidEvent(problems)
    return event


def collect_call(
    raw: Any, kind: str | None, now: datetime, path: str, problems: list[Problem]
) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, "expected a JSON object"))
        return None
    kind = kind or raw.get("type")
    if kind not in ("track", "identify"):
        problems.append(Problem(f"{path}.type", "expected track or identify"))
        return None
    traits = _traits(raw, kind, path, problems)
    event: dict[str, Any] = {
        "timestamp": raw.get("timestamp") or raw.get("originalTimestamp") or now.isoformat(),
    }
    for ours, theirs in (("event_id", "messageId"), ("customer_id", "userId"),
                         ("anonymous_id", "anonymousId")):
        value = raw.get(theirs)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # Segment allows numeric user ids
        if value is not None:
            event[ours] = value
    for name in _PII_TRAITS:
        if isinstance(traits.get(name), str) and traits[name].strip():
            event[name] = traits[name]
    if kind == "track":
        given = raw.get("event")
        if not isinstance(given, str) or not snake_case(given):
            problems.append(Problem(f"{path}.event", "required: the event name"))
            return None
        event["event"] = snake_case(given)
        event["properties"] = raw.get("properties") or {}
    else:
        event["event"] = IDENTIFY_EVENT
        event["properties"] = {k: v for k, v in traits.items() if k not in _PII_TRAITS}
    return event


def _traits(raw: dict[str, Any], kind: str, path: str, problems: list[Problem]) -> dict[str, Any]:
    """identify's own traits win over context.traits (Segment's precedence)."""
    merged: dict[str, Any] = {}
    context = raw.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        merged.update(context["traits"])
    own = raw.get("traits")
    if own is not None and not isinstance(own, dict):
        problems.append(Problem(f"{path}.traits", "expected a JSON object"))
    elif isinstance(own, dict):
        merged.update(own)
    return merged


def batch_calls(raw: Any, now: datetime) -> list[dict[str, Any]]:
    """The calls of a Segment ``/v1/batch`` body, each mapped; every problem listed."""
    if not isinstance(raw, dict) or not isinstance(raw.get("batch"), list):
        raise InvalidEvent([Problem("$.batch", "required: an array of track/identify calls")])
    calls = raw["batch"]
    if not calls:
        raise InvalidEvent([Problem("$.batch", "expected at least one call")])
    problems: list[Problem] = []
    events = [collect_call(c, None, now, f"$.batch[{i}]", problems) for i, c in enumerate(calls)]
    if problems:
        raise InvalidEvent(problems)
    return [e for e in events if e is not None]
