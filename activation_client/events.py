"""Building and checking events before they are sent.

The checks mirror the gateway's contract so most mistakes are caught in the
sender's process; the gateway still validates everything (typed payload fields
of known events included). :func:`make_event` gives every event an ``event_id``;
the clients give one to any other event lacking it, on a copy, before its first
attempt, so a retried request can never create a second event.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from activation_client.errors import InvalidEventError

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
EVENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
ID_FIELDS = ("customer_id", "email", "phone", "anonymous_id")
MAX_EVENT_BYTES = 32 * 1024

Event = dict[str, Any]


def make_event(
    event: str,
    timestamp: datetime | str,
    *,
    customer_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    anonymous_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    event_id: str | None = None,
) -> Event:
    """A checked event dict ready to send; raises :class:`InvalidEventError`."""
    if isinstance(timestamp, datetime):
        timestamp = timestamp.isoformat()  # a naive one is then reported by check_event
    body: Event = {"event": event, "timestamp": timestamp,
                   "event_id": event_id or str(uuid.uuid4()),
                   "properties": dict(properties or {})}
    for name, value in zip(ID_FIELDS, (customer_id, email, phone, anonymous_id), strict=True):
        if value is not None:
            body[name] = value
    check_event(body)
    return body


def check_event(body: Mapping[str, Any], max_bytes: int = MAX_EVENT_BYTES) -> list[str]:
    """Problems with an event dict (raises if there are any; returns [] otherwise)."""
    problems: list[str] = []
    if not isinstance(body.get("event"), str) or not EVENT_NAME.match(body["event"]):
        problems.append("event: expected a snake_case name (purchase_completed)")
    problems += _timestamp_problems(body.get("timestamp"))
    ids = [body.get(n) for n in ID_FIELDS if body.get(n) is not None]
    if not ids:
        problems.append("one of " + ", ".join(ID_FIELDS) + " is required")
    elif not all(isinstance(v, str) and v.strip() for v in ids):
        problems.append("identifiers: expected non-empty strings")
    event_id = body.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not EVENT_ID.match(event_id)):
        problems.append("event_id: expected 1-128 printable ASCII characters")
    if not isinstance(body.get("properties", {}), Mapping):
        problems.append("properties: expected a mapping")
    else:
        try:
            size = len(json.dumps(body, default=_no_default).encode())
        except (TypeError, ValueError) as exc:
            problems.append(f"not JSON serialisable: {exc}")
        else:
            if size > max_bytes:
                problems.append(f"event is {size} bytes, the limit is {max_bytes}")
    if problems:
        raise InvalidEventError(problems)
    return problems


def _timestamp_problems(value: Any) -> list[str]:
    expected = "timestamp: expected ISO 8601 with a time zone (2024-05-01T12:00:00Z)"
    if not isinstance(value, str):
        return [expected]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return [expected]
    return [] if parsed.utcoffset() is not None else [expected]


def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


MAX_BATCH_BYTES = 500 * 1024


def chunks(events: list[Event], max_events: int, max_bytes: int = MAX_BATCH_BYTES
           ) -> list[list[Event]]:
    """Split queued events into batches the gateway accepts (count and body size)."""
    out: list[list[Event]] = []
    current: list[Event] = []
    size = 16  # '{"events":[]}' and slack
    for event in events:
        length = len(json.dumps(event).encode()) + 1
        if current and (len(current) >= max_events or size + length > max_bytes):
            out.append(current)
            current, size = [], 16
        current.append(event)
        size += length
    if current:
        out.append(current)
    return out
