"""Turn a JSON event (the gateway's own format) into an :class:`Envelope`, or list why not.

Pure functions: no I/O, the clock is passed in. Every problem is collected,
not only the first, so a sender fixes a payload in one round trip.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from ingest.avro_check import PayloadRules
from ingest.errors import InvalidEvent, Problem
from streams.records import Envelope, Identifiers, PropertyValue

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
EVENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
ID_FIELDS = ("customer_id", "email", "phone", "anonymous_id")
KNOWN_FIELDS = frozenset({"event", "timestamp", "properties", "event_id", *ID_FIELDS})
MAX_ID_LENGTH = 256
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_AS_IS = frozenset({type(None), bool, int, str})  # property values _scalar() returns unchanged


@dataclass(frozen=True)
class Policy:
    """What the gateway accepts; built once from Settings and the schema catalog."""

    rules: PayloadRules
    max_future_skew: timedelta
    unknown_events: Literal["accept", "reject"]


def parse_json(body: bytes) -> Any:
    """Parse a request body; floats become Decimal so money stays exact."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent([Problem("$", f"expected a JSON document: {exc}")]) from exc


def validate_event(
    raw: Any,
    policy: Policy,
    now: datetime,
    source: str,
    fallback_event_id: str | None = None,
    path: str = "$",
) -> Envelope:
    """The envelope for one event; :class:`InvalidEvent` lists every problem."""
    problems: list[Problem] = []
    envelope = collect_event(raw, policy, now, source, fallback_event_id, path, problems)
    if problems or envelope is None:
        raise InvalidEvent(problems)
    return envelope


def collect_event(
    raw: Any,
    policy: Policy,
    now: datetime,
    source: str,
    fallback_event_id: str | None,
    path: str,
    problems: list[Problem],
) -> Envelope | None:
    """Like :func:`validate_event` but appends to ``problems`` (used for batches)."""
    if not isinstance(raw, dict):
        problems.append(Problem(path, "expected a JSON object"))
        return None
    start = len(problems)
    if not KNOWN_FIELDS.issuperset(raw):  # the common case skips building sets
        for extra in sorted(set(raw) - KNOWN_FIELDS):
            problems.append(Problem(f"{path}.{extra}", "unknown field (put it in properties)"))
    # Helpers get the event's path and add their field's name only to a problem.
    name = _event_name(raw.get("event"), policy, path, problems)
    event_time = _timestamp(raw.get("timestamp"), now, policy, path, problems)
    identifiers = _identifiers(raw, path, problems)
    event_id = _event_id(raw.get("event_id"), fallback_event_id, path, problems)
    properties = _properties(raw.get("properties"), path, problems)
    payload: dict[str, Any] | None = None
    if name is not None and properties is not None and policy.rules.knows(name):
        payload, properties = policy.rules.extract(name, properties, f"{path}.properties", problems)
    if name is None or event_time is None or identifiers is None or properties is None:
        return None
    if len(problems) > start:
        return None
    return Envelope(
        event_id=event_id,
        event_name=name,
        event_time=event_time,
        received_time=now,
        source=source,
        identifiers=identifiers,
        properties={k: v if type(v) in _AS_IS else _scalar(v) for k, v in properties.items()},
        payload=payload,
    )


def _event_name(value: Any, policy: Policy, path: str, problems: list[Problem]) -> str | None:
    if not isinstance(value, str) or not EVENT_NAME.match(value):
        problems.append(Problem(f"{path}.event",
                                "required: snake_case event name (purchase_completed)"))
        return None
    if policy.unknown_events == "reject" and not policy.rules.knows(value):
        known = ", ".join(sorted(policy.rules.fields))
        problems.append(Problem(f"{path}.event", f"unknown event name; expected one of {known}"))
        return None
    return value


def _timestamp(
    value: Any, now: datetime, policy: Policy, path: str, problems: list[Problem]
) -> datetime | None:
    expected = "required: ISO 8601 timestamp with a time zone (2024-05-01T12:00:00Z)"
    if not isinstance(value, str):
        problems.append(Problem(f"{path}.timestamp", expected))
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(Problem(f"{path}.timestamp", expected))
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        problems.append(Problem(f"{path}.timestamp", "time zone missing: " + expected))
        return None
    if parsed - now > policy.max_future_skew:
        skew = int(policy.max_future_skew.total_seconds())
        problems.append(Problem(f"{path}.timestamp",
                                f"in the future by more than {skew}s; check the clock"))
        return None
    return parsed


def _identifiers(raw: dict[str, Any], path: str, problems: list[Problem]) -> Identifiers | None:
    given: dict[str, str] = {}
    ok = True
    for name in ID_FIELDS:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
            problems.append(Problem(f"{path}.{name}", f"expected a non-empty string of at most "
                                    f"{MAX_ID_LENGTH} characters"))
            ok = False
            continue
        given[name] = value
    if not given:
        if ok:
            problems.append(Problem(path, "at least one of " + ", ".join(ID_FIELDS) + " required"))
        return None
    try:
        identifiers = Identifiers.from_clear(**given)
    except ValueError as exc:
        field = "email" if "email" in str(exc) else "phone"
        problems.append(Problem(f"{path}.{field}", str(exc)))
        return None
    return identifiers if ok else None


def _event_id(
    value: Any, fallback: str | None, path: str, problems: list[Problem]
) -> str:
    if value is None:
        return fallback or str(uuid.uuid4())
    if not isinstance(value, str) or not EVENT_ID.match(value):
        problems.append(Problem(f"{path}.event_id",
                                "expected 1-128 printable ASCII characters, no spaces"))
    return str(value)


def _properties(value: Any, path: str, problems: list[Problem]) -> dict[str, Any] | None:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem(f"{path}.properties", "expected a JSON object"))
        return None
    for key, item in value.items():
        if isinstance(item, int) and not isinstance(item, bool) and not (
            _LONG_MIN <= item <= _LONG_MAX
        ):
            problems.append(Problem(f"{path}.properties.{key}", "integer outside the 64-bit range"))
    return value  # not copied: nothing changes it, and the envelope gets a new dict


def _scalar(value: Any) -> PropertyValue:
    """A property value as Avro writes it; nested values become JSON strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | float):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
