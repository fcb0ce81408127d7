"""API key checks, token buckets and the idempotency cache (clock injected, no sleeping)."""

from __future__ import annotations

import base64

import pytest

from ingest.auth import (
    ADMIN,
    EVENTS_WRITE,
    PROFILES_READ,
    KeyRecord,
    KeyTable,
    credential_from_header,
    hash_key,
    key_id_of,
    new_key,
)
from ingest.errors import AuthError, ForbiddenScope, RateLimited
from ingest.limits import AnswerCache, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_header_forms() -> None:
    assert credential_from_header("Bearer abc") == "abc"
    basic = base64.b64encode(b"writekey:").decode()
    assert credential_from_header(f"Basic {basic}") == "writekey"
    for bad in (None, "", "Token x", "Basic !!!", "Bearer "):
        with pytest.raises(AuthError):
            credential_from_header(bad)


def test_keys_scopes_and_revocation() -> None:
    table = KeyTable("pepper")
    key_id, key = new_key()
    assert key_id_of(key) == key_id
    table.apply(KeyRecord(key_id, hash_key(key, "pepper"), (EVENTS_WRITE,)), key_id)
    principal = table.authenticate(key)
    principal.require(EVENTS_WRITE)
    with pytest.raises(ForbiddenScope):
        principal.require(PROFILES_READ)
    with pytest.raises(AuthError):
        table.authenticate(key + "x")
    table.apply(KeyRecord(key_id, hash_key(key, "pepper"), (EVENTS_WRITE,), revoked=True), key_id)
    with pytest.raises(AuthError):
        table.authenticate(key)


def test_admin_implies_every_scope_and_wrong_pepper_fails() -> None:
    table = KeyTable("pepper")
    table.apply(KeyRecord("bootstrap", hash_key("local", "pepper"), (ADMIN,)), "bootstrap")
    table.authenticate("local").require(PROFILES_READ)
    other = KeyTable("other")
    other.apply(KeyRecord("bootstrap", hash_key("local", "pepper"), (ADMIN,)), "bootstrap")
    with pytest.raises(AuthError):
        other.authenticate("local")


def test_record_json_roundtrip() -> None:
    record = KeyRecord("abc", "h", (EVENTS_WRITE, ADMIN), name="n")
    assert KeyRecord.from_json(record.to_json()) == record


def test_token_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    for _ in range(5):
        limiter.take("k")
    with pytest.raises(RateLimited) as info:
        limiter.take("k")
    assert info.value.retry_after == pytest.approx(0.1)
    limiter.take("other")  # buckets are per key
    clock.now = 0.1
    limiter.take("k")
    clock.now = 10
    limiter.take("k", cost=50)  # larger than the burst: costs a full bucket
    with pytest.raises(RateLimited):
        limiter.take("k")


def test_answer_cache_expires_and_is_bounded() -> None:
    clock = Clock()
    cache = AnswerCache(ttl=60, max_entries=2, clock=clock)
    cache.put("a", {"n": 1})
    assert cache.get("a") == {"n": 1}
    clock.now = 61
    assert cache.get("a") is None
    for key in "bcd":
        cache.put(key, {})
    assert len(cache) == 2 and cache.get("b") is None
