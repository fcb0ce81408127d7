"""The event envelope as Python values, and the pure functions around it.

Avro records travel as plain dicts (fastest for fastavro); :class:`Envelope`
is the typed view the rest of the code works with. Conversions are explicit so
a unit test can round-trip them without a broker.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.errors import EncodeError

EVENTS_NS = "io.activation.events"
# Event names with a typed payload branch in EventEnvelope.payload. Names not
# listed here are still accepted: they travel with properties only.
PAYLOAD_TYPES: dict[str, str] = {
    "purchase_completed": f"{EVENTS_NS}.PurchaseCompleted",
    "subscription_started": f"{EVENTS_NS}.SubscriptionStarted",
    "subscription_canceled": f"{EVENTS_NS}.SubscriptionCanceled",
    "contract_renewed": f"{EVENTS_NS}.ContractRenewed",
    "consent_updated": f"{EVENTS_NS}.ConsentUpdated",
}
PropertyValue = None | bool | int | float | str
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_NOISE = re.compile(r"[\s\-().]")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalize_email(email: str) -> str:
    """Trimmed, lower-cased address; raises ValueError if it is not an address."""
    cleaned = email.strip().lower()
    if not _EMAIL.match(cleaned):
        raise ValueError(f"not an email address: {email!r}")
    return cleaned


def normalize_phone(phone: str) -> str:
    """E.164 form (+ and 8 to 15 digits); raises ValueError otherwise.

    Only international forms are accepted: guessing a country for a national
    number would silently merge the wrong customers.
    """
    cleaned = _PHONE_NOISE.sub("", phone.strip())
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if not re.fullmatch(r"\+[1-9]\d{7,14}", cleaned):
        raise ValueError(f"not an international (E.164) phone number: {phone!r}")
    return cleaned


@dataclass(frozen=True)
class Identifiers:
    customer_id: str | None = None
    email_sha256: str | None = None
    phone_sha256: str | None = None
    anonymous_id: str | None = None

    @classmethod
    def from_clear(
        cls,
        customer_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        anonymous_id: str | None = None,
    ) -> Identifiers:
        """Normalise and hash clear-text email and phone."""
        return cls(
            customer_id=customer_id,
            email_sha256=sha256_hex(normalize_email(email)) if email else None,
            phone_sha256=sha256_hex(normalize_phone(phone)) if phone else None,
            anonymous_id=anonymous_id,
        )

    def is_empty(self) -> bool:
        return not (self.customer_id or self.email_sha256 or self.phone_sha256 or self.anonymous_id)

    def partition_key(self) -> str:
        """The strongest identifier, typed, so one customer's events share a partition."""
        for prefix, value in (
            ("cid", self.customer_id),
            ("em", self.email_sha256),
            ("ph", self.phone_sha256),
            ("anon", self.anonymous_id),
        ):
            if value:
                return f"{prefix}:{value}"
        raise EncodeError("an event needs at least one customer identifier")

    def to_avro(self) -> dict[str, str | None]:
        return {
            "customer_id": self.customer_id,
            "email_sha256": self.email_sha256,
            "phone_sha256": self.phone_sha256,
            "anonymous_id": self.anonymous_id,
        }


@dataclass(frozen=True)
class Envelope:
    """One customer event; ``payload`` holds the typed body of known event names."""

    event_id: str
    event_name: str
    event_time: datetime
    received_time: datetime
    source: str
    identifiers: Identifiers
    properties: dict[str, PropertyValue] = field(default_factory=dict)
    payload: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("event_time", "received_time"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise EncodeError(f"{name} must be timezone-aware, got {value.isoformat()}")
        if self.identifiers.is_empty():
            raise EncodeError("an event needs at least one customer identifier")

    @property
    def key(self) -> str:
        return self.identifiers.partition_key()

    def to_avro(self) -> dict[str, Any]:
        """The dict fastavro writes; a typed payload names its union branch explicitly."""
        payload: tuple[str, dict[str, Any]] | None = None
        if self.payload is not None:
            type_name = PAYLOAD_TYPES.get(self.event_name)
            if type_name is None:
                raise EncodeError(f"event {self.event_name!r} has no typed payload branch")
            payload = (type_name, self.payload)
        return {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "event_time": self.event_time,
            "received_time": self.received_time,
            "source": self.source,
            "identifiers": self.identifiers.to_avro(),
            "properties": dict(self.properties),
            "payload": payload,
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Envelope:
        """From a decoded record; works for records written by any later schema version."""
        ids = record.get("identifiers") or {}
        # Read in the order the keyword arguments were (so a bad record fails as before).
        event_id, event_name = record["event_id"], record["event_name"]
        event_time = record["event_time"]
        if type(event_time) is not datetime or event_time.tzinfo is not UTC:
            event_time = _aware(event_time)  # fastavro's UTC datetimes need nothing
        received_time = record["received_time"]
        if type(received_time) is not datetime or received_time.tzinfo is not UTC:
            received_time = _aware(received_time)
        source = record["source"]
        # Identifiers' frozen __init__ without its per-field setattr (it checks nothing).
        identifiers = object.__new__(Identifiers)
        identifiers.__dict__.update(
            customer_id=ids.get("customer_id"), email_sha256=ids.get("email_sha256"),
            phone_sha256=ids.get("phone_sha256"), anonymous_id=ids.get("anonymous_id"))
        properties = dict(record.get("properties") or {})
        payload = record.get("payload")
        if event_time.tzinfo is not UTC or received_time.tzinfo is not UTC:
            # Not the decoder's UTC: the constructor's full checks.
            return cls(event_id, event_name, event_time, received_time, source, identifiers,
                       properties, payload)
        if identifiers.is_empty():  # the one check of __post_init__ left to make
            raise EncodeError("an event needs at least one customer identifier")
        # What the frozen __init__ does, in field order, without its keyword handling
        # and __post_init__'s time-zone checks (decoded times are UTC): once per event.
        envelope = object.__new__(cls)
        envelope.__dict__.update(
            event_id=event_id, event_name=event_name, event_time=event_time,
            received_time=received_time, source=source, identifiers=identifiers,
            properties=properties, payload=payload)
        return envelope


def _aware(value: datetime | int) -> datetime:
    """fastavro gives aware UTC datetimes; accept raw micros from other readers too."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1_000_000, tz=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
