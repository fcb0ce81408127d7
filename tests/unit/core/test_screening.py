"""Contract checks, dead-letter records and the dedup decision (pure)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.core.contract import ContractViolation, validate_record
from streams.core.deadletter import SourceRecord, dead_letter, screen
from streams.core.dedup import dedup_key, within_window
from streams.errors import DecodeError, RegistryError
from streams.records import Envelope
from tests.unit.core.conftest import T0

NOW = T0 + timedelta(minutes=1)
SRC = SourceRecord("events.ingest", 2, 41, b"k", b"\x00bytes", (("h", b"1"), ("h", b"2")))


def record(event: Callable[..., Envelope], **changes: Any) -> dict[str, Any]:
    return event("e1", "page_viewed", 0).to_avro() | changes


def test_valid_record_gives_envelope(event: Callable[..., Envelope]) -> None:
    assert validate_record(record(event), NOW).event_id == "e1"


@pytest.mark.parametrize(("changes", "words"), [
    ({"identifiers": {}}, "identifier"),
    ({"event_id": "  "}, "event_id"),
    ({"event_time": datetime(1970, 1, 1, tzinfo=UTC)}, "before 2000"),
    ({"event_time": NOW + timedelta(days=2)}, "future"),
    ({"event_name": ""}, "event_name"),
])
def test_contract_violations_say_why(
    event: Callable[..., Envelope], changes: dict[str, Any], words: str
) -> None:
    with pytest.raises(ContractViolation, match=words):
        validate_record(record(event, **changes), NOW)


def test_dead_letter_keeps_bytes_and_origin() -> None:
    dl = dead_letter(SRC, "decode_error", "x" * 5000, "stream.screen", NOW)
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"]) == (
        "events.ingest", 2, 41)
    assert dl["original_key"] == b"k" and dl["original_value"] == b"\x00bytes"
    assert dl["original_headers"] == {"h": b"2"} and len(dl["reason"]) == 2000
    assert dl["failed_at"] == NOW and dl["redrive_count"] == 0


def test_screen_turns_poison_into_dead_letters(event: Callable[..., Envelope]) -> None:
    def bad(_: bytes | None) -> tuple[int, dict[str, Any]]:
        raise DecodeError("corrupt")

    out = screen(SRC, bad, NOW, "stream.screen")
    assert out.envelope is None and out.dead_letter is not None
    assert out.dead_letter["reason_code"] == "decode_error"
    invalid = screen(SRC, lambda _: (1, record(event, identifiers={})), NOW, "s")
    assert invalid.dead_letter is not None
    assert invalid.dead_letter["reason_code"] == "contract_violation"
    good = screen(SRC, lambda _: (1, record(event)), NOW, "s")
    assert good.envelope is not None and good.dead_letter is None


def test_unforeseen_errors_become_processing_errors(event: Callable[..., Envelope]) -> None:
    def broken(_: bytes | None) -> tuple[int, dict[str, Any]]:
        raise ZeroDivisionError("bug")

    out = screen(SRC, broken, NOW, "stream.screen")
    assert out.dead_letter is not None
    assert out.dead_letter["reason_code"] == "processing_error"
    assert "ZeroDivisionError" in out.dead_letter["reason"]


def test_registry_outage_is_not_the_records_fault() -> None:
    def down(_: bytes | None) -> tuple[int, dict[str, Any]]:
        raise RegistryError("unreachable")

    with pytest.raises(RegistryError):
        screen(SRC, down, NOW, "stream.screen")


def test_dedup_decision_respects_window() -> None:
    assert dedup_key("é1") == "d:é1".encode()
    assert within_window(T0, T0 + timedelta(days=6), timedelta(days=7))
    assert not within_window(T0, T0 + timedelta(days=7), timedelta(days=7))
