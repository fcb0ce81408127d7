"""The profile stage's decoded profiles (streams/core/profile_cache.py): an entry answers
only for the bytes it was made from, the budget holds, and the stage with it stores
and returns exactly what it does without it."""

from __future__ import annotations

from collections.abc import Callable

from streams.core.pipeline import StageConfig, apply_resolved, pkey
from streams.core.profile import Profile
from streams.core.profile_cache import DecodedProfiles
from streams.core.sandbox import DictStore
from streams.records import Envelope


def test_an_entry_answers_only_for_its_own_bytes() -> None:
    cache = DecodedProfiles(1 << 20)
    first = Profile("p1", order_count=1)
    raw = first.to_json()
    cache.remember("p1", raw, first)
    assert cache.read("p1", bytes(raw)) is first  # equal bytes, another object
    other = Profile("p1", order_count=2).to_json()  # written by someone else meanwhile
    got = cache.read("p1", other)
    assert got == Profile("p1", order_count=2) and got is not first
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.read("p1", other) is got  # the miss kept what it decoded


def test_the_budget_drops_the_least_recently_used_and_zero_keeps_nothing() -> None:
    profiles = {f"p{i}": Profile(f"p{i}") for i in range(4)}
    size = len(profiles["p0"].to_json())
    cache = DecodedProfiles(3 * size)
    for pid in ("p0", "p1", "p2"):
        cache.remember(pid, profiles[pid].to_json(), profiles[pid])
    cache.read("p0", profiles["p0"].to_json())  # p0 used again: p1 is now the oldest
    cache.remember("p3", profiles["p3"].to_json(), profiles["p3"])
    assert len(cache) == 3 and cache.held == 3 * size
    assert cache.read("p1", profiles["p1"].to_json()) is not profiles["p1"]  # dropped
    off = DecodedProfiles(0)
    off.remember("p0", profiles["p0"].to_json(), profiles["p0"])
    assert len(off) == 0 and off.read("p0", profiles["p0"].to_json()) == profiles["p0"]
    assert len(off) == 0


def test_apply_resolved_with_the_cache_stores_and_returns_what_it_does_without(
        event: Callable[..., Envelope], cfg: StageConfig) -> None:
    cached, plain = DictStore(), DictStore()
    cache = DecodedProfiles(1 << 20)
    names = ["identify", "purchase_completed", "consent_updated", "page_viewed"]
    for i in range(60):
        env = event(f"e{i}", names[i % 4], i % 9, props={"tier": f"t{i % 3}"},
                    anon=f"a{i % 2}", customer=f"c{i % 3}")
        pid = f"p{i % 3}"
        if i == 30:  # another writer changes a stored profile: the entry must not answer
            other = Profile(pid, order_count=99).to_json()
            cached[pkey(pid)] = plain[pkey(pid)] = other
        got = apply_resolved(cached, env, pid, i, cfg, decoded=cache)
        want = apply_resolved(plain, env, pid, i, cfg)
        assert got == want and cached == plain
    assert cache.hits > 40 and cache.misses >= 1
