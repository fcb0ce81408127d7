"""The screened event as it travels between the stages: decoded once, at screening.

Screening Avro-decodes an ingestion record and checks the contract (the one decode).
The envelope it made then travels with the event, inside the batch records of the
internal topics (streams/core/batch.py, version 3), in this compact MessagePack form,
beside the original Avro bytes (which a dead letter keeps, byte for byte). The
identity and profile stages read it back (about 2 µs) instead of decoding Avro and
checking the contract again; they fall back to Avro only for records written before
this format (version 1 and 2 batches).

The form is a MessagePack array, positional, versioned by the batch format:
``[event_id, event_name, event_time, received_time, source, customer_id,
email_sha256, phone_sha256, anonymous_id, properties, payload]``. Times are MessagePack
timestamps; decimals and dates (Avro logical types a payload may hold) are extension
types 1 and 2, so a payload reads back with the very Python types Avro gave.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from streams.errors import EncodeError
from streams.records import Envelope, Identifiers

_DECIMAL, _DATE = 1, 2
_CARRIED = "_carried"  # an envelope's attribute (not a field): the bytes it was read from


def _typed(value: Any) -> Any:
    """``value`` with its decimals and dates as extension types (msgspec would write
    them as plain strings, which read back as strings)."""
    if isinstance(value, Decimal):
        return msgspec.msgpack.Ext(_DECIMAL, str(value).encode())
    if isinstance(value, date) and not isinstance(value, datetime):
        return msgspec.msgpack.Ext(_DATE, value.isoformat().encode())
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    return value


def _ext(code: int, data: memoryview) -> Any:
    text = bytes(data).decode()
    if code == _DECIMAL:
        return Decimal(text)
    if code == _DATE:
        return date.fromisoformat(text)
    raise msgspec.DecodeError(f"unknown extension type {code} in a carried envelope")


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ext_hook=_ext)


class CarriedFormatError(ValueError):
    """Bytes that are not a carried envelope (a batch record's framing is wrong)."""


def encode(envelope: Envelope) -> bytes:
    """The envelope's carried form; the very bytes it was read from when it was
    (:func:`decode`): the identity stage passes events on without encoding them again."""
    known = envelope.__dict__.get(_CARRIED)
    if known is not None:
        return known  # type: ignore[no-any-return]
    ids = envelope.identifiers
    payload = None if envelope.payload is None else _typed(envelope.payload)
    return _ENCODER.encode((
        envelope.event_id, envelope.event_name, envelope.event_time, envelope.received_time,
        envelope.source, ids.customer_id, ids.email_sha256, ids.phone_sha256,
        ids.anonymous_id, envelope.properties, payload))


def decode(data: bytes) -> Envelope:
    """The envelope screening made; it was valid then, so no contract check again."""
    try:
        (event_id, name, event_time, received, source, cid, em, ph, anon, properties,
         payload) = _DECODER.decode(data)
        if (event_time.tzinfo is not UTC or received.tzinfo is not UTC
                or not (cid or em or ph or anon) or type(properties) is not dict):
            # Not what screening writes: Envelope.from_avro's checks (and its errors).
            return Envelope.from_avro({
                "event_id": event_id, "event_name": name, "event_time": event_time,
                "received_time": received, "source": source, "properties": properties,
                "identifiers": {"customer_id": cid, "email_sha256": em, "phone_sha256": ph,
                                "anonymous_id": anon}, "payload": payload})
    except (msgspec.DecodeError, EncodeError, ValueError, TypeError, KeyError,
            AttributeError) as exc:
        raise CarriedFormatError(f"unreadable carried envelope: {exc}") from exc
    # What the frozen constructors do, without their checks (made above) and per-field
    # set-up: twice per event (identity and profile stages). The bytes are kept on the
    # envelope (not a field: equality and hashing ignore them) for :func:`encode`.
    ids = object.__new__(Identifiers)
    ids.__dict__.update(customer_id=cid, email_sha256=em, phone_sha256=ph, anonymous_id=anon)
    envelope = object.__new__(Envelope)
    envelope.__dict__.update(
        event_id=event_id, event_name=name, event_time=event_time, received_time=received,
        source=source, identifiers=ids, properties=properties, payload=payload)
    envelope.__dict__[_CARRIED] = data
    return envelope
