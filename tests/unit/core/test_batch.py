"""Batch records between the screening and profile stages (streams/core/batch.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from streams.core import carried
from streams.core.batch import (
    BATCH_SPAN,
    BatchFormatError,
    BatchItem,
    chunked,
    decode_batch,
    encode_batch,
    parse_origin,
    position,
)
from streams.records import Envelope, Identifiers


@pytest.fixture
def items() -> list[BatchItem]:
    return [
        BatchItem("activation.events.ingest:3:17", b"cust_1", b"\x00\x00\x00\x00\x01abc"),
        BatchItem("activation.events.ingest:0:0", None, b""),
        BatchItem("t:1:2", b"", b"x" * 70_000),
    ]


def test_round_trip_keeps_order_bytes_and_null_keys(items: list[BatchItem]) -> None:
    assert decode_batch(encode_batch(items)) == items
    assert decode_batch(encode_batch([])) == []


def test_truncated_or_padded_or_unknown_version_is_refused(items: list[BatchItem]) -> None:
    data = encode_batch(items)
    with pytest.raises(BatchFormatError, match="truncated|unreadable"):
        decode_batch(data[:-1])
    with pytest.raises(BatchFormatError, match="unexpected bytes"):
        decode_batch(data + b"\x00")
    with pytest.raises(BatchFormatError, match="version 4"):
        decode_batch(b"\x04" + data[1:])
    with pytest.raises(BatchFormatError):
        decode_batch(b"")


def test_chunks_respect_both_limits_and_keep_order() -> None:
    small = [BatchItem(f"t:0:{i}", None, b"v" * 90) for i in range(10)]
    runs = list(chunked(small, max_events=4, max_bytes=10_000))
    assert [len(r) for r in runs] == [4, 4, 2]
    assert [i for r in runs for i in r] == small
    runs = list(chunked(small, max_events=100, max_bytes=350))  # ~104 bytes each
    assert [len(r) for r in runs] == [3, 3, 3, 1]


def test_an_event_larger_than_the_limit_travels_alone() -> None:
    big = BatchItem("t:0:1", None, b"v" * 5_000)
    small = BatchItem("t:0:2", None, b"v")
    assert [len(r) for r in chunked([small, big, small], max_bytes=1_000)] == [1, 1, 1]


def test_resolved_items_carry_their_profile_id_in_version_2(items: list[BatchItem]) -> None:
    resolved = [BatchItem(i.origin, i.key, i.value, f"p-{n}") for n, i in enumerate(items)]
    data = encode_batch(resolved)
    assert data[0] == 2 and encode_batch(items)[0] == 1  # screening's stay version 1
    assert decode_batch(data) == resolved


def test_positions_are_unique_increasing_and_compatible_with_plain_offsets() -> None:
    assert position(7) == 7 * BATCH_SPAN
    assert position(7, BATCH_SPAN - 1) < position(8)
    assert position(7, 1) > position(7)
    with pytest.raises(ValueError, match="at most"):
        encode_batch([BatchItem("t:0:0", None, b"")] * (BATCH_SPAN + 1))


def test_origin_parses_back_to_topic_partition_offset() -> None:
    assert parse_origin("activation.events.ingest:3:17") == ("activation.events.ingest", 3, 17)


def envelope(n: int, payload: dict[str, object] | None = None) -> Envelope:
    at = datetime(2026, 11, 30, 9, n, 0, 123456, tzinfo=UTC)
    return Envelope(f"e-{n}", "purchase_completed", at, at, "billing",
                    Identifiers(customer_id=f"c{n}", email_sha256="ab" * 32),
                    {"plan": "pro", "seats": 3, "ratio": 0.5, "trial": False, "x": None},
                    payload)


def test_carried_envelopes_read_back_equal_with_their_avro_types() -> None:
    payload = {"order_id": "o1", "order_value": Decimal("50.1400"), "currency": "EUR",
               "product_ids": ["sku6"], "contract_end": date(2027, 1, 31),
               "renewed_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    for original in (envelope(1, payload), envelope(2)):
        back = carried.decode(carried.encode(original))
        assert back == original
        assert back.event_time.utcoffset() is not None
    value = carried.decode(carried.encode(envelope(1, payload))).payload
    assert value is not None and isinstance(value["order_value"], Decimal)
    assert isinstance(value["contract_end"], date)
    with pytest.raises(carried.CarriedFormatError):
        carried.decode(b"\x93\x01\x02\x03")


def test_items_with_envelopes_travel_as_version_3_beside_the_original_bytes(
        items: list[BatchItem]) -> None:
    screened = [BatchItem(i.origin, i.key, i.value, envelope=envelope(n))
                for n, i in enumerate(items)]
    screened[1] = items[1]  # one without (an older record forwarded again)
    data = encode_batch(screened)
    assert data[0] == 3
    read = decode_batch(data)
    # read back as the carried bytes, decoded by the stage that needs the envelope
    assert [i._replace(carried=b"") for i in read] == [
        i._replace(envelope=None) for i in screened]
    assert [carried.decode(i.carried) if i.carried else None for i in read] == [
        i.envelope for i in screened] == [envelope(0), None, envelope(2)]
    assert read[1].carried == b""  # none: the stage decodes its Avro value
    # sent on as read: the same bytes, not decoded and encoded again
    resolved = [i._replace(profile=f"p-{n}") for n, i in enumerate(read)]
    assert decode_batch(encode_batch(resolved)) == resolved
    assert encode_batch(read) == data


def test_an_unreadable_carried_envelope_costs_its_event_an_avro_decode_not_its_batch(
        items: list[BatchItem]) -> None:
    screened = [BatchItem(i.origin, i.key, i.value, envelope=envelope(n))
                for n, i in enumerate(items)]
    data = encode_batch(screened)
    bad = carried.encode(envelope(0))
    read = decode_batch(data.replace(bad, b"\xc1" * len(bad)))
    assert [i.value for i in read] == [i.value for i in screened]
    with pytest.raises(carried.CarriedFormatError):
        carried.decode(read[0].carried)
    assert carried.decode(read[1].carried) == envelope(1)
    truncated = data[:-3]
    with pytest.raises(BatchFormatError, match="truncated"):
        decode_batch(truncated)
