"""Sign-in by API key: server-side sessions behind an opaque cookie.

The browser holds only a random session id (``console_session``: HttpOnly, so no
script reads it; SameSite=Strict, so no other site's page sends it; Secure when the
page came over TLS). The API key stays here, in memory, and is checked against the key
store on every request, so a key revoked with ``scripts/apikeys revoke`` ends its
sessions within seconds. Each session has a CSRF token that every state change must
echo (a second line behind SameSite). Sessions are per process: a restart signs
everyone out, which for an operator tool is safer than a session table on disk.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from ingest.auth import ADMIN, PROFILES_READ, Principal

COOKIE = "console_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Session:
    """One signed-in operator. ``key`` never leaves the server."""

    sid: str
    key: SecretStr
    key_id: str
    name: str
    scopes: frozenset[str]
    csrf: str
    created_at: datetime
    last_seen: datetime

    @property
    def can_change_state(self) -> bool:
        """Re-drive, undo a merge, enable a destination: the admin scope only."""
        return may_change_state(self.scopes)

    def authorization(self) -> dict[str, str]:
        """The header the console sends to the workers on this operator's behalf."""
        return {"Authorization": f"Bearer {self.key.get_secret_value()}"}

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


def may_sign_in(scopes: frozenset[str]) -> bool:
    """Reading profiles is what the console is for: ``profiles:read`` (or admin)."""
    return PROFILES_READ in scopes or ADMIN in scopes


def may_change_state(scopes: frozenset[str]) -> bool:
    return ADMIN in scopes


def cookie_secure(setting: str, request_secure: bool) -> bool:
    """Secure when served over TLS, or always (a proxy in front terminates TLS)."""
    return setting == "always" or request_secure


def cookie_attributes(secure: bool, max_age: int | None = None) -> dict[str, Any]:
    """``set_cookie`` keyword arguments for the session cookie."""
    attrs: dict[str, Any] = {"httponly": True, "samesite": "Strict", "secure": secure,
                             "path": "/"}
    if max_age is not None:
        attrs["max_age"] = max_age
    return attrs


class SessionStore:
    """Sessions by id, ended after ``idle`` without a request; thread-safe."""

    def __init__(self, idle: timedelta, clock: Clock = utc_now) -> None:
        self._idle, self._clock = idle, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, key: str, principal: Principal, name: str) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), SecretStr(key), principal.key_id, name,
                          principal.scopes, secrets.token_urlsafe(24), now, now)
        with self._lock:
            self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session (its idle time restarted), or None."""
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.last_seen > self._idle:
                del self._sessions[sid]
                return None
            session = self._sessions[sid] = replace(session, last_seen=now)
            return session

    def refresh(self, sid: str, scopes: frozenset[str]) -> None:
        """The key's scopes as the key store says now (changed since sign-in)."""
        with self._lock:
            if sid in self._sessions:
                self._sessions[sid] = replace(self._sessions[sid], scopes=scopes)

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
