"""Sessions: opaque ids, idle expiry, CSRF, who may sign in and who may change state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console.sessions import (
    SessionStore,
    cookie_attributes,
    cookie_secure,
    may_change_state,
    may_sign_in,
)
from ingest.auth import ADMIN, EVENTS_WRITE, PROFILES_READ, Principal


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_cookie_flags() -> None:
    attrs = cookie_attributes(secure=False, max_age=60)
    assert attrs == {"httponly": True, "samesite": "Strict", "secure": False, "path": "/",
                     "max_age": 60}
    assert cookie_attributes(secure=True)["secure"] is True


def test_secure_over_tls_or_when_told() -> None:
    assert cookie_secure("auto", request_secure=True)
    assert not cookie_secure("auto", request_secure=False)
    assert cookie_secure("always", request_secure=False)


def test_scopes() -> None:
    assert may_sign_in(frozenset({PROFILES_READ})) and may_sign_in(frozenset({ADMIN}))
    assert not may_sign_in(frozenset({EVENTS_WRITE}))
    assert may_change_state(frozenset({ADMIN}))
    assert not may_change_state(frozenset({PROFILES_READ, EVENTS_WRITE}))


def test_sessions_expire_when_idle_and_keep_the_key_server_side() -> None:
    clock = Clock()
    store = SessionStore(timedelta(minutes=10), clock)
    session = store.create("ak_secret", Principal("k1", frozenset({PROFILES_READ})), "ops")
    assert len(session.sid) >= 40 and "ak_secret" not in repr(session)
    assert not session.can_change_state
    assert session.authorization() == {"Authorization": "Bearer ak_secret"}
    clock.now += timedelta(minutes=9)
    assert store.get(session.sid) is not None  # used: the idle time starts again
    clock.now += timedelta(minutes=9)
    assert store.get(session.sid) is not None
    clock.now += timedelta(minutes=11)
    assert store.get(session.sid) is None and len(store) == 0
    assert store.get(None) is None and store.get("forged") is None


def test_csrf_and_scope_refresh() -> None:
    store = SessionStore(timedelta(hours=1))
    session = store.create("k", Principal("k1", frozenset({PROFILES_READ})), "ops")
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(None) and not session.csrf_matches("x")
    store.refresh(session.sid, frozenset({ADMIN}))
    refreshed = store.get(session.sid)
    assert refreshed is not None and refreshed.can_change_state
    store.drop(session.sid)
    assert store.get(session.sid) is None
