"""The fast paths of screening, identity and profile stages, against the general code.

Each fast path skips a general step for the common case (a frozen ``__init__``, a sort
of one owner, ``json.dumps``, ``max``, a loop over identifiers the profile knows); each
is compared here with that general step, on the cases it takes and the ones it leaves.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from streams.core import identity_stage
from streams.core.contract import ContractViolation, validate_record
from streams.core.identity import Resolution, identifier_keys, new_profile_id, resolve
from streams.core.identity_stage import (
    Plan,
    Routed,
    StoreView,
    _json_strs,
    _now_us,
    _routed,
    _store_view,
    plan_route,
    route_event,
)
from streams.core.pipeline import (
    StageConfig,
    apply_resolved,
    canonical_id,
    load_profile,
    pkey,
)
from streams.core.profile import (
    Profile,
    _lww,
    _merge_ids,
    _set_attrs,
    apply_event,
    micros,
    stamp_of,
    summarize,
    timeline_properties,
)
from streams.core.sandbox import DictStore
from streams.records import Envelope, Identifiers

AT = datetime(2026, 3, 1, tzinfo=UTC)


def _same_object(fast: Any, general: Any) -> None:
    """Equal, same repr, same attributes in the same order (what pickling would see)."""
    assert type(fast) is type(general)
    assert fast == general and repr(fast) == repr(general)
    assert list(fast.__dict__.items()) == list(general.__dict__.items())


# --- screening --------------------------------------------------------------------------

def _avro(**changes: Any) -> dict[str, Any]:
    record = {"event_id": "e1", "event_name": "x", "event_time": AT, "received_time": AT,
              "source": "kafka:t", "identifiers": {"customer_id": "c1", "anonymous_id": "a"},
              "properties": {"a": 1}, "payload": None}
    return {**record, **changes}


class _Moment(datetime):
    """A datetime subclass: not fastavro's type, so the general time handling."""


@pytest.mark.parametrize("changes", [
    {},
    {"identifiers": {"email_sha256": "e", "phone_sha256": "p"}},
    {"event_time": 1_700_000_000_000_000},
    {"received_time": datetime(2026, 3, 1)},  # noqa: DTZ001  (naive: read as UTC)
    {"event_time": datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=2)))},
    {"event_time": _Moment(2026, 3, 1, tzinfo=UTC)},
])
def test_from_avro_builds_what_the_constructors_build(changes: dict[str, Any]) -> None:
    record = _avro(**changes)
    env = Envelope.from_avro(record)
    ids = record["identifiers"]
    general = Identifiers(ids.get("customer_id"), ids.get("email_sha256"),
                          ids.get("phone_sha256"), ids.get("anonymous_id"))
    _same_object(env.identifiers, general)

    def aware(value: Any) -> datetime:
        if isinstance(value, int):
            return datetime.fromtimestamp(value / 1_000_000, tz=UTC)
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    _same_object(env, Envelope(
        "e1", "x", aware(record["event_time"]), aware(record["received_time"]), "kafka:t",
        general, {"a": 1}, None))
    assert type(env.event_time) is type(aware(record["event_time"]))


def _validate_as_before(record: dict[str, Any], now: datetime, skew: timedelta) -> str:
    """validate_record's time check as it was written (with ``max``): its outcome."""
    env = Envelope.from_avro(record)
    latest = max(now, env.received_time) + skew
    if env.event_time > latest:
        return (f"event_time {env.event_time.isoformat()} is in the future "
                f"(later than {latest.isoformat()})")
    return "ok"


@pytest.mark.parametrize("skew", [timedelta(minutes=5), timedelta(0), -timedelta(seconds=3)])
def test_the_future_check_is_maxs(skew: timedelta) -> None:
    plus_two = timezone(timedelta(hours=2))
    nows = [AT, AT + timedelta(seconds=2), AT - timedelta(seconds=2), AT.astimezone(plus_two)]
    times = [AT + timedelta(seconds=s) for s in (-400, -2, 0, 1, 299, 300, 301, 400)]
    for now, received, event_time in itertools.product(nows, times, times):
        record = _avro(event_time=event_time, received_time=received.astimezone(plus_two))
        try:
            validate_record(record, now, skew)
            outcome = "ok"
        except ContractViolation as exc:
            outcome = str(exc)
        assert outcome == _validate_as_before(record, now, skew)


# --- identity ---------------------------------------------------------------------------

def _resolve_as_before(keys: list[str], lookup: Callable[[str], str | None]) -> Resolution:
    """resolve as it was: every owner set and sorted."""
    known = {key: pid for key in keys if (pid := lookup(key)) is not None}
    if not known:
        pid = new_profile_id(keys[0])
        return Resolution(pid, True, dict.fromkeys(keys, pid))
    owners = sorted(set(known.values()))
    winner, losers = owners[0], tuple(owners[1:])
    links = {key: winner for key in keys if known.get(key) != winner}
    return Resolution(winner, False, links, losers, tuple(sorted(known)) if losers else ())


def test_resolve_with_one_owner_skips_the_sort_and_decides_the_same() -> None:
    rng = random.Random(9)
    for _ in range(2000):
        graph = {f"k{i}": f"p{rng.randint(0, 3)}" for i in range(6) if rng.random() < 0.5}
        keys = rng.sample([f"k{i}" for i in range(8)], rng.randint(1, 4))
        _same_object(resolve(keys, graph.get), _resolve_as_before(keys, graph.get))


def test_plan_and_routed_are_what_their_constructors_make() -> None:
    store = DictStore({b"i:cid:a": b"p-a", b"i:em:b": b"p-b", b"k:p-b": b'["em:b"]'})
    plan = plan_route(StoreView(store), "e1", 5, ["cid:a", "em:b", "anon:c"])
    _same_object(plan, Plan(plan.resolution, plan.merges, plan.owned))
    assert plan.merges and plan.owned is not None
    _same_object(_routed("applied", "p-a", plan.merges), Routed("applied", "p-a", plan.merges))
    _same_object(_store_view(store), StoreView(store))


def test_owner_follows_redirects_as_canonical_id_does() -> None:
    store = DictStore({b"i:cid:a": b"p-a", b"i:cid:b": b"p-b", b"r:p-b": b"p-c",
                       b"r:p-c": b"p-d", b"i:cid:\xc3\xa9": "p-\u00e9".encode()})
    view = StoreView(store)
    for key in ("cid:a", "cid:b", "cid:\u00e9", "cid:none"):
        raw = store.get(b"i:" + key.encode())
        assert view.owner(key) == (None if raw is None else canonical_id(store, raw.decode()))


def test_route_event_plans_what_plan_route_plans() -> None:
    """route_event reads the event time (in micros) for a merge only; the plan is
    plan_route's, merges and their times included."""
    store = DictStore()
    at = AT + timedelta(microseconds=7)
    merges: list[Any] = []
    for i, ids in enumerate([Identifiers("a"), Identifiers("b", "e"),
                             Identifiers("a", "e"), Identifiers("b", "e", anonymous_id="x")]):
        env = Envelope(f"e{i}", "x", at, at, "t", ids)
        before = DictStore(store)
        expected = plan_route(StoreView(before), env.event_id, micros(at),
                              identifier_keys(ids))
        routed = route_event(store, env, AT, timedelta(days=1), f"o{i}")
        assert (routed.profile_id, routed.merges) == (expected.profile_id, expected.merges)
        merges.extend(routed.merges)
    assert merges and all(m.merged_at_us == micros(at) for m in merges)


def test_now_us_is_micros_for_the_same_and_for_other_times() -> None:
    times = [AT, AT + timedelta(microseconds=1), AT, datetime(2026, 3, 1, 1, tzinfo=timezone(
        timedelta(hours=1)))]
    for at in [*times, *times]:
        assert _now_us(at) == micros(at)
    again = datetime(2026, 3, 1, tzinfo=UTC)  # equal to AT, another object: micros again
    assert _now_us(again) == micros(again) and identity_stage._last_now[0] is again


@pytest.mark.parametrize("values", [(), ("cid:c1",), ("anon:a", "cid:é\"\\\n", "em:\u2028"),
                                    ("a", type("S", (str,), {})("sub"))])
def test_json_strs_is_json_dumps(values: tuple[str, ...]) -> None:
    assert _json_strs(values) == json.dumps(list(values)).encode()


# --- profile ----------------------------------------------------------------------------

def _merge_ids_as_before(have: dict[str, list[str]], env: Envelope) -> dict[str, list[str]]:
    out: dict[str, list[str]] | None = None
    for kind in ("customer_id", "email_sha256", "phone_sha256", "anonymous_id"):
        value = getattr(env.identifiers, kind)
        if value and value not in (have if out is None else out).get(kind, ()):
            if out is None:
                out = {k: list(v) for k, v in have.items()}
            out[kind] = sorted([*out.get(kind, []), value])
    return have if out is None else out


def test_merge_ids_known_identifiers_fast_path(event: Callable[..., Envelope]) -> None:
    rng = random.Random(4)
    pool = [None, "", "v1", "v2"]
    for _ in range(1000):
        have = {kind: sorted(rng.sample(["v1", "v2", "v3"], rng.randint(0, 2)))
                for kind in ("customer_id", "email_sha256", "anonymous_id")
                if rng.random() < 0.7}
        env = Envelope("e", "x", AT, AT, "t", Identifiers(
            rng.choice(pool) or "v1", rng.choice(pool), rng.choice(pool), rng.choice(pool)))
        merged = _merge_ids(have, env)
        expected = _merge_ids_as_before(have, env)
        assert merged == expected and (merged is have) == (expected is have)


def test_summary_and_properties_of_events_without_any(event: Callable[..., Envelope]) -> None:
    for props, payload in itertools.product([{}, {"a": 1}], [None, {}, {"plan": "x"}]):
        env = Envelope("e", "page_viewed", AT, AT, "t", Identifiers("c"), props, payload)
        merged = {**props, **(payload or {})}
        assert timeline_properties(env) == {k: merged[k] for k in sorted(merged)}
        listed = ", ".join(f"{k}={v}" for k, v in sorted(props.items()))
        assert summarize(env) == "page_viewed" + (f" ({listed})" if listed else "")


def test_apply_resolved_is_load_apply_store(event: Callable[..., Envelope],
                                            cfg: StageConfig) -> None:
    store, reference = DictStore(), DictStore()
    names = ["identify", "purchase_completed", "consent_updated", "page_viewed"]
    for i in range(40):
        env = event(f"e{i}", names[i % 4], i % 7, props={"tier": f"t{i % 3}"},
                    anon=f"a{i % 2}")
        got = apply_resolved(store, env, "p1", i, cfg)
        before = load_profile(reference, "p1")
        want = apply_event(before or Profile("p1"), env, cfg.ordering_window,
                           cfg.timeline_limit).evolve(last_offset=i)
        reference[pkey("p1")] = want.to_json()
        assert got == want and store == reference


def test_set_attrs_is_last_writer_wins_as_lww_decides() -> None:
    rng = random.Random(6)
    stamps = [(t, e) for t in (1, 2) for e in ("a", "b")]
    for _ in range(500):
        current = {f"k{i}": [rng.choice(["x", None]), rng.choice(stamps)]
                   for i in range(rng.randint(0, 3))}
        updates = {f"k{i}": rng.choice(["y", None, 3]) for i in range(rng.randint(0, 4))}
        stamp = rng.choice(stamps)
        expected = dict(current)
        for name, value in updates.items():
            newer = _lww(expected.get(name), value, stamp)
            if newer is not None:
                expected[name] = newer
        assert _set_attrs(current, updates, stamp) == expected


def test_stamp_of_is_micros_and_id() -> None:
    for at in (AT, AT + timedelta(microseconds=999_999),
               datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-5)))):
        env = Envelope("e9", "x", at, at, "t", Identifiers("c"))
        assert stamp_of(env) == (micros(at), "e9")
