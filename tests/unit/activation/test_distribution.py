"""Publication records: encoding, re-validation on decode, and which one is in force."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streams.activation.definitions import DefinitionError, DefinitionSet, load_definitions
from streams.activation.distribution import (
    Published,
    choose_in_force,
    decode_record,
    encode_record,
)

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def defs() -> DefinitionSet:
    return load_definitions(Path("definitions"))


def published(defs: DefinitionSet, sequence: int = 1, **kw: object) -> Published:
    fields: dict[str, object] = {"version": defs.version, "published_by": "ana",
                                 "published_at": AT, "definitions": defs}
    fields.update(kw)
    return Published(sequence=sequence, **fields)  # type: ignore[arg-type]


def test_round_trip(defs: DefinitionSet) -> None:
    p = published(defs, 7)
    key, value = encode_record(p)
    assert key == b"v00000007"
    doc = json.loads(value)
    assert doc["sequence"] == 7 and doc["version"] == defs.version
    assert doc["published_at"] == "2026-03-02T10:00:00+00:00"
    assert isinstance(doc["snapshot"], dict)  # embedded as an object, not a string
    assert decode_record(key, value) == p


def test_record_id_in_the_key_round_trips_and_must_match_the_sequence(
    defs: DefinitionSet
) -> None:
    p = published(defs, 7, record_id="5f0c2a9e1b7d")
    key, value = encode_record(p)
    assert key == b"v00000007-5f0c2a9e1b7d"
    assert decode_record(key, value) == p
    with pytest.raises(DefinitionError, match="does not match the key"):
        decode_record(b"v00000008-5f0c2a9e1b7d", value)


def test_published_at_is_aware_and_kept_in_utc(defs: DefinitionSet) -> None:
    berlin = timezone(timedelta(hours=1))
    p = published(defs, published_at=datetime(2026, 3, 2, 11, 0, tzinfo=berlin))
    assert p.published_at == AT and p.published_at.tzinfo == UTC
    assert decode_record(*encode_record(p)).published_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        published(defs, published_at=datetime(2026, 3, 2, 10, 0))  # noqa: DTZ001


def test_version_must_match_the_definitions(defs: DefinitionSet) -> None:
    with pytest.raises(ValueError, match="version"):
        published(defs, version="000000000000")


def test_tampered_snapshot_is_refused(defs: DefinitionSet) -> None:
    key, value = encode_record(published(defs, 3))
    doc = json.loads(value)
    doc["snapshot"]["audiences"]["contract_ending"]["description"] = "tampered"
    with pytest.raises(DefinitionError, match=r"definitions record v00000003: snapshot: version"):
        decode_record(key, json.dumps(doc).encode())


def test_record_version_must_match_its_snapshot(defs: DefinitionSet) -> None:
    key, value = encode_record(published(defs, 3))
    doc = json.loads(value)
    doc["version"] = "000000000000"
    with pytest.raises(DefinitionError, match="v00000003: .*version"):
        decode_record(key, json.dumps(doc).encode())


def _doc(defs: DefinitionSet) -> dict[str, object]:
    return dict(json.loads(encode_record(published(defs, 2))[1]))


@pytest.mark.parametrize(("key", "value", "expected"), [
    (b"v00000002", b"not json{", "v00000002: .*Expecting value"),
    (b"v00000002", b"[1, 2]", "v00000002: expected a JSON object, got list"),
    (b"v00000002", b"\xff\xfe", "v00000002: "),
    (b"v00000002", None, "v00000002: tombstone"),
    (None, b"{}", r"\(no key\): missing field 'sequence'"),
])
def test_garbage_is_refused_naming_the_key(
    key: bytes | None, value: bytes | None, expected: str
) -> None:
    with pytest.raises(DefinitionError, match=expected):
        decode_record(key, value)


@pytest.mark.parametrize(("field", "change", "expected"), [
    ("snapshot", None, "missing field 'snapshot'"),
    ("published_by", None, "missing field 'published_by'"),
    ("sequence", "2", "sequence: expected int, got str"),
    ("sequence", True, "sequence: expected int, got bool"),
    ("sequence", 5, "sequence 5 does not match the key"),
    ("snapshot", "{}", "snapshot: expected dict, got str"),
    ("published_at", "yesterday", "Invalid isoformat string"),
    ("published_at", "2026-03-02T10:00:00", "has no UTC offset"),
])
def test_bad_fields_are_refused_naming_the_key(
    defs: DefinitionSet, field: str, change: object, expected: str
) -> None:
    doc = _doc(defs)
    if change is None:
        del doc[field]
    else:
        doc[field] = change
    with pytest.raises(DefinitionError, match=f"definitions record v00000002: .*{expected}"):
        decode_record(b"v00000002", json.dumps(doc).encode())


def test_invalid_definitions_inside_the_snapshot_are_refused(defs: DefinitionSet) -> None:
    doc = _doc(defs)
    snap = doc["snapshot"]
    assert isinstance(snap, dict)
    del snap["journeys"]
    with pytest.raises(DefinitionError, match="v00000002: snapshot: missing 'journeys'"):
        decode_record(b"v00000002", json.dumps(doc).encode())


def test_choose_in_force_keeps_the_higher_sequence(defs: DefinitionSet) -> None:
    one, two = published(defs, 1), published(defs, 2, published_by="bo")
    assert choose_in_force(None, one) is one
    assert choose_in_force(one, two) is two
    assert choose_in_force(two, one) is two  # an older record read later changes nothing
    assert choose_in_force(two, published(defs, 2, published_by="bo")) is two  # same again


def test_same_sequence_other_version_later_record_wins(
    defs: DefinitionSet, tmp_path: Path
) -> None:
    # Two racing publishers: the later record wins, so readers agree (distinct record ids
    # in the keys keep both in the compacted history).
    shutil.copytree("definitions", tmp_path / "defs")
    audience = tmp_path / "defs" / "audiences" / "trial_ending.yaml"
    audience.write_text(audience.read_text().replace("has not bought yet", "has not paid"))
    other = load_definitions(tmp_path / "defs")
    assert other.version != defs.version
    first = published(defs, 4)
    later = published(other, 4, version=other.version)
    assert choose_in_force(first, later) is later
