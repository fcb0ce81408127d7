"""The ingestion contract beyond what Avro can say: checks on a decoded envelope.

A record can decode fine and still make no sense (no identifier, an event time in
1970 or next year). Such records are contract violations: dead-lettered, never applied.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from streams.errors import ActivationError, EncodeError
from streams.records import Envelope

# Nothing this platform processes happened before this; older times are unset clocks.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_FUTURE_SKEW = timedelta(minutes=5)


class ContractViolation(ActivationError):
    """A decoded record breaks the event contract; the message says which rule."""


def validate_record(
    record: dict[str, Any], now: datetime, future_skew: timedelta = DEFAULT_FUTURE_SKEW
) -> Envelope:
    """The envelope of a decoded record, or :class:`ContractViolation` saying why not."""
    try:
        envelope = Envelope.from_avro(record)
    except (EncodeError, KeyError, TypeError, ValueError) as exc:
        raise ContractViolation(f"not a valid envelope: {exc}") from exc
    if not envelope.event_id.strip():
        raise ContractViolation("event_id is empty")
    if not envelope.event_name.strip():
        raise ContractViolation("event_name is empty")
    if envelope.event_time < EARLIEST_EVENT_TIME:
        raise ContractViolation(
            f"event_time {envelope.event_time.isoformat()} is before {EARLIEST_EVENT_TIME.date()}"
        )
    received = envelope.received_time
    # max(now, received) without the builtin's call (once per event); a tie keeps
    # ``now``, as max does (the message shows its time zone).
    latest = (received if received > now else now) + future_skew
    if envelope.event_time > latest:
        raise ContractViolation(
            f"event_time {envelope.event_time.isoformat()} is in the future "
            f"(later than {latest.isoformat()})"
        )
    return envelope
