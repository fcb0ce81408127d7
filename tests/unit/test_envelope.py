"""The envelope survives Avro encoding in the Confluent wire format, byte-exact."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
import pytest

from streams.errors import EncodeError
from streams.records import Envelope, Identifiers, normalize_email, normalize_phone, sha256_hex
from streams.schemas import SchemaCatalog
from streams.serde import Encoder
from streams.settings import REPO_ROOT
from streams.topics import ENVELOPE


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    catalog = SchemaCatalog.load(REPO_ROOT / "avro_schemas")
    return Encoder(42, catalog.parsed(ENVELOPE), "events.ingest-value")


@pytest.fixture
def make_envelope() -> Callable[..., Envelope]:
    def make(**overrides: Any) -> Envelope:
        when = datetime(2024, 1, 15, 14, 32, tzinfo=UTC)
        fields: dict[str, Any] = {
            "event_id": "evt-1",
            "event_name": "purchase_completed",
            "event_time": when,
            "received_time": when + timedelta(seconds=1),
            "source": "http:key1",
            "identifiers": Identifiers(customer_id="cust_12345"),
            "properties": {"coupon": "X", "n": 2, "vip": True, "score": 1.5, "none": None},
            "payload": {
                "order_id": "ord_98765",
                "order_value": Decimal("149.99"),
                "currency": "EUR",
                "product_ids": ["p1"],
            },
        }
        fields.update(overrides)
        return Envelope(**fields)

    return make


def decode(encoder: Encoder, data: bytes) -> dict[str, Any]:
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert (magic, schema_id) == (0, 42)
    catalog = SchemaCatalog.load(REPO_ROOT / "avro_schemas")
    record: dict[str, Any] = fastavro.schemaless_reader(
        BytesIO(data[5:]), catalog.parsed(ENVELOPE), None
    )
    return record


def test_roundtrip_with_typed_payload(
    encoder: Encoder, make_envelope: Callable[..., Envelope]
) -> None:
    sent = make_envelope()
    got = Envelope.from_avro(decode(encoder, encoder(sent.to_avro())))
    assert got == sent


@pytest.mark.parametrize(
    "name,payload",
    [
        (
            "subscription_started",
            {
                "plan": "pro",
                "start_date": date(2024, 1, 1),
                "subscription_id": None,
                "contract_end_date": date(2025, 1, 1),
            },
        ),
        (
            "subscription_canceled",
            {"cancel_date": date(2024, 2, 1), "reason": "price", "subscription_id": "s1"},
        ),
        ("contract_renewed", {"new_end_date": date(2026, 1, 1), "subscription_id": None}),
        ("consent_updated", {"consent_type": "marketing:email", "status": "GRANTED"}),
    ],
)
def test_roundtrip_of_each_event_type(
    encoder: Encoder, make_envelope: Callable[..., Envelope], name: str, payload: dict[str, Any]
) -> None:
    sent = make_envelope(event_name=name, payload=payload)
    assert Envelope.from_avro(decode(encoder, encoder(sent.to_avro()))) == sent


def test_unknown_event_name_travels_with_properties_only(
    encoder: Encoder, make_envelope: Callable[..., Envelope]
) -> None:
    sent = make_envelope(event_name="loyalty_tier_changed", payload=None)
    assert Envelope.from_avro(decode(encoder, encoder(sent.to_avro()))) == sent


def test_times_keep_their_instant_across_time_zones(
    encoder: Encoder, make_envelope: Callable[..., Envelope]
) -> None:
    cet = timezone(timedelta(hours=1))
    sent = make_envelope(event_time=datetime(2024, 1, 15, 15, 32, tzinfo=cet))
    got = Envelope.from_avro(decode(encoder, encoder(sent.to_avro())))
    assert got.event_time == datetime(2024, 1, 15, 14, 32, tzinfo=UTC)


def test_naive_time_is_refused(make_envelope: Callable[..., Envelope]) -> None:
    with pytest.raises(EncodeError, match="timezone-aware"):
        make_envelope(event_time=datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test


def test_event_without_identifier_is_refused(make_envelope: Callable[..., Envelope]) -> None:
    with pytest.raises(EncodeError, match="identifier"):
        make_envelope(identifiers=Identifiers())


def test_payload_that_does_not_fit_is_an_encode_error(
    encoder: Encoder, make_envelope: Callable[..., Envelope]
) -> None:
    bad = make_envelope(payload={"order_id": "o", "order_value": "lots", "currency": "EUR"})
    with pytest.raises(EncodeError, match="events.ingest-value"):
        encoder(bad.to_avro())


def test_identifiers_are_normalised_and_hashed() -> None:
    ids = Identifiers.from_clear(email="  Ann@Example.COM ", phone="+49 (151) 123-45678")
    assert ids.email_sha256 == sha256_hex("ann@example.com")
    assert ids.phone_sha256 == sha256_hex("+4915112345678")
    assert ids.partition_key() == f"em:{ids.email_sha256}"
    assert Identifiers(customer_id="c1", anonymous_id="a").partition_key() == "cid:c1"


@pytest.mark.parametrize("bad", ["", "ann", "ann@", "a b@c.d"])
def test_bad_email_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="email"):
        normalize_email(bad)


@pytest.mark.parametrize("bad", ["0151 1234567", "+0123456789", "+12", "phone"])
def test_national_or_malformed_phone_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="E.164"):
        normalize_phone(bad)


def test_double_zero_prefix_becomes_plus() -> None:
    assert normalize_phone("0049 151 12345678") == "+4915112345678"
