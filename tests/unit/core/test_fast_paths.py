"""The per-event fast paths write and read exactly what the general code did.

Profiles are written with orjson when it gives pydantic-core's very bytes, and read
without the dataclass ``__init__``; envelopes are decoded without it; identity keys
and dedup markers are spelled out. Each is checked here against the general form.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pydantic_core
import pytest

from streams.core import carried
from streams.core.identity import _KINDS, identifier_keys, new_profile_id
from streams.core.identity_stage import new_marker
from streams.core.pipeline import canonical_id
from streams.core.profile import (
    Profile,
    apply_event,
    insert_timeline,
    timeline_order,
    timeline_properties,
)
from streams.core.routing import key_slot, partition_of
from streams.core.sandbox import DictStore
from streams.errors import EncodeError
from streams.records import Envelope, Identifiers

WINDOW = timedelta(seconds=5)
STAMP = (1_700_000_000_000_000, "e1")


def _profile(**changes: Any) -> Profile:
    base = Profile("p1", identifiers={"customer_id": ["c1"]},
                   traits={"tier": ["gold", STAMP]}, consent={"m:e": ["GRANTED", STAMP]},
                   subscriptions={"s1": {"status": ["active", STAMP],
                                         "cancel_date": [None, STAMP]}},
                   order_count=1, lifetime_value={"EUR": "1.50"},
                   last_purchase=["o1", STAMP], newest_event_us=STAMP[0], last_offset=3,
                   timeline=[{"event_id": "e1", "event_name": "x", "time_us": STAMP[0],
                              "summary": "s é \u2028 \x1f", "late": False,
                              "properties": {"n": 1.5, "big": 2**63 - 1, "neg": -0.0}}])
    return base.evolve(**changes)


def _entry(props: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"event_id": "e1", "event_name": "x", "time_us": 1, "summary": "", "late": False,
             "properties": props}]


@pytest.mark.parametrize("profile", [
    Profile("p0"),
    _profile(),
    _profile(last_purchase=None),
    _profile(last_purchase=[None, STAMP]),
    _profile(traits={"t": [None, STAMP], "u": ["null", STAMP]}),  # the word, in a string
    _profile(traits={"t": [float("nan"), STAMP]}),  # pydantic writes NaN, orjson null
    _profile(timeline=_entry({"inf": float("inf")})),
    _profile(timeline=_entry({"none": None})),  # a None no attribute accounts for
    _profile(traits={"t": [2**70, STAMP]}),  # beyond 64 bits
    _profile(traits={"t": [Decimal("1.5"), STAMP]}),
    _profile(traits={"t": [date(2026, 1, 2), STAMP]}),
    _profile(traits={"t": [datetime(2026, 1, 2, tzinfo=UTC), STAMP]}),
    _profile(traits={"t": [type("S", (str,), {})("sub"), STAMP]}),
    _profile(traits={"t": [("a", 1), STAMP]}),
], ids=lambda p: repr(p.traits)[:40])
def test_to_json_writes_pydantic_cores_bytes(profile: Profile) -> None:
    raw = profile.to_json()
    assert raw == pydantic_core.to_json(profile.__dict__)
    back = Profile.from_json(raw)  # NaN and Infinity: read by pydantic-core, as before
    assert repr(back) == repr(_read_as_before(raw))  # repr: NaN is not equal to itself
    assert back.to_json() == raw


def _read_as_before(raw: bytes) -> Profile:
    """Profile.from_json as it was: pydantic-core, stamps as new tuples, ``__init__``."""
    def stamped(pair: list[Any]) -> list[Any]:
        return [pair[0], (int(pair[1][0]), str(pair[1][1]))]

    data = pydantic_core.from_json(raw)
    data["traits"] = {k: stamped(v) for k, v in data["traits"].items()}
    data["consent"] = {k: stamped(v) for k, v in data["consent"].items()}
    data["subscriptions"] = {sid: {k: stamped(v) for k, v in attrs.items()}
                             for sid, attrs in data["subscriptions"].items()}
    if data["last_purchase"] is not None:
        data["last_purchase"] = stamped(data["last_purchase"])
    return Profile(**data)


def test_to_json_bytes_on_random_profiles(event: Callable[..., Envelope]) -> None:
    rng = random.Random(3)
    values: list[Any] = [None, True, 0, -7, 2**64, 1.25, 1e300, float("nan"), "", "a\"b\\",
                         "\u00e9\U0001f600", "null"]
    for _ in range(300):
        props = {f"k{i}": rng.choice(values) for i in range(rng.randint(0, 4))}
        name = rng.choice(["identify", "page_viewed", "purchase_completed"])
        ev = event(f"e{rng.randint(0, 50)}", name, rng.randint(0, 100), props=props)
        profile = apply_event(_profile(), ev, WINDOW, 5)
        assert profile.to_json() == pydantic_core.to_json(profile.__dict__)


def test_from_json_of_what_to_json_wrote_is_the_profile() -> None:
    profile = _profile()
    back = Profile.from_json(profile.to_json())
    assert back == profile and back.to_json() == profile.to_json()
    assert isinstance(back.traits["tier"][1], tuple)


def test_from_json_reads_other_field_orders_and_old_stamps() -> None:
    """State in another key order (or with fields missing) goes through ``__init__``:
    fields in their order, defaults filled in; stamps are restored as before."""
    doc = json.loads(_profile().to_json())
    doc["traits"]["tier"] = ["gold", [1.0, "e1"], "extra"]
    shuffled = dict(reversed(list(doc.items())))
    del shuffled["last_offset"]
    raw = json.dumps(shuffled).encode()
    back = Profile.from_json(raw)
    assert repr(back) == repr(_read_as_before(raw))
    assert list(back.__dict__) == list(Profile("x").__dict__)
    assert back.last_offset == -1 and back.traits["tier"] == ["gold", (1, "e1")]
    assert back.to_json() == pydantic_core.to_json(back.__dict__)


def test_identifier_keys_follow_the_kinds_in_order() -> None:
    for present in itertools.product([None, "v"], repeat=4):
        ids = Identifiers(*(f"{v}{i}" if v else None for i, v in enumerate(present)))
        general = [f"{prefix}:{getattr(ids, kind)}" for kind, prefix in _KINDS
                   if getattr(ids, kind)]
        assert identifier_keys(ids) == general


@pytest.mark.parametrize("origin,pid", [("t:0:1", "p-1"), ("é\"\\\n", "p-\u2028"), ("", "")])
def test_new_marker_is_json_dumps(origin: str, pid: str) -> None:
    assert new_marker(1_700_000_000_000_001, origin, pid) == json.dumps(
        {"seen_us": 1_700_000_000_000_001, "origin": origin, "pid": pid}).encode()
    assert new_marker(True, origin, pid) == json.dumps(  # not an exact int: json.dumps
        {"seen_us": True, "origin": origin, "pid": pid}).encode()


def _avro(**changes: Any) -> dict[str, Any]:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    record = {"event_id": "e1", "event_name": "x", "event_time": at, "received_time": at,
              "source": "kafka:t", "identifiers": {"customer_id": "c1"},
              "properties": {"a": 1}, "payload": None}
    return {**record, **changes}


def test_from_avro_builds_what_the_constructor_builds() -> None:
    record = _avro()
    env = Envelope.from_avro(record)
    assert env == Envelope("e1", "x", record["event_time"], record["received_time"], "kafka:t",
                           Identifiers(customer_id="c1"), {"a": 1}, None)
    assert env.properties is not record["properties"]
    plus_one = timezone(timedelta(hours=1))
    other = Envelope.from_avro(_avro(event_time=datetime(2026, 3, 1, tzinfo=plus_one)))
    assert other.event_time.tzinfo is plus_one
    assert Envelope.from_avro(_avro(event_time=1_000_000)).event_time == datetime(
        1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(EncodeError):
        Envelope.from_avro(_avro(identifiers={}))


@pytest.mark.parametrize("limit", [0, 1, 6])
def test_insert_timeline_matches_the_sorted_insert(limit: int) -> None:
    rng = random.Random(5)
    for _ in range(200):
        timeline: list[dict[str, Any]] = []
        for _ in range(rng.randint(0, 12)):
            entry = {"event_id": f"e{rng.randint(0, 9)}", "time_us": rng.randint(0, 5)}
            expected = sorted([e for e in timeline if e["event_id"] != entry["event_id"]]
                              + [entry], key=timeline_order, reverse=True)[:limit]
            timeline = insert_timeline(timeline, entry, limit)
            assert timeline == expected


def test_known_identifiers_are_shared_new_ones_copied(event: Callable[..., Envelope]) -> None:
    profile = apply_event(Profile("p1"), event("a", customer="c1"), WINDOW, 5)
    same = apply_event(profile, event("b", customer="c1"), WINDOW, 5)
    assert same.identifiers is profile.identifiers
    more = apply_event(profile, event("c", customer="c1", anon="x"), WINDOW, 5)
    assert more.identifiers == {"customer_id": ["c1"], "anonymous_id": ["x"]}
    assert profile.identifiers == {"customer_id": ["c1"]}


def test_canonical_id_follows_redirects_and_stops_on_a_cycle() -> None:
    store = DictStore({b"r:a": b"b", b"r:b": b"c"})
    assert canonical_id(store, "a") == "c" and canonical_id(store, "z") == "z"
    store[b"r:c"] = b"a"
    assert canonical_id(store, "a") == "a"


def test_timeline_properties_keep_what_they_kept(event: Callable[..., Envelope]) -> None:
    values: list[Any] = ["x" * 150, True, 3, 1.5, Decimal("2.50"), date(2026, 1, 2),
                         datetime(2026, 1, 2, 3, tzinfo=UTC), None, [1], {"a": 1}, b"b"]
    props = {f"p{i:02}": v for i, v in enumerate(values * 2)}
    env = event("e1", props=props)

    def as_before(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str):
            return value[:100]
        return value if isinstance(value, bool | int | float) else "skip"

    expected = {k: as_before(v) for k, v in sorted(props.items())[:16]}
    assert timeline_properties(env) == {k: v for k, v in expected.items() if v != "skip"}


def test_carried_decode_builds_what_from_avro_builds_and_keeps_its_bytes() -> None:
    """carried.decode's direct construction against Envelope.from_avro (the general
    path), and the bytes it read, given back by encode without encoding again."""
    at = datetime(2026, 11, 30, 9, 1, 0, 123456, tzinfo=UTC)
    made = Envelope("e-1", "purchase_completed", at, at, "billing",
                    Identifiers(customer_id="c1", anonymous_id="a1"), {"plan": "pro", "n": 3},
                    {"order_value": Decimal("1.50"), "contract_end": date(2027, 1, 31)})
    data = carried.encode(made)
    back = carried.decode(data)
    assert back == made and vars(back.identifiers) == vars(made.identifiers)
    assert back == Envelope.from_avro({**made.to_avro(), "payload": made.payload})
    assert carried.encode(back) is data
    assert carried.encode(made) == data  # an envelope made elsewhere: encoded afresh
    no_ids = msgspec.msgpack.encode(("e-2", "x", at, at, "s", None, None, None, None, {}, None))
    with pytest.raises(carried.CarriedFormatError):  # refused, as by from_avro
        carried.decode(no_ids)
    # Not what screening writes (no properties map): the general path, as from_avro.
    other = msgspec.msgpack.encode(("e-3", "x", at, at, "s", "c3", None, None, None, None,
                                    None))
    assert carried.decode(other).properties == {}


def test_partitions_and_slots_are_the_digests_memoised() -> None:
    for pid in ("p-1", "p-2", "p-" + "x" * 40):
        digest = int.from_bytes(hashlib.blake2b(pid.encode(), digest_size=8).digest(), "big")
        assert partition_of(pid, 7) == digest % 7 == partition_of(pid, 7)
    assert key_slot("cid:c1", 1) == 0
    assert key_slot("cid:c1", 4) == partition_of(new_profile_id("cid:c1"), 4)
