"""API keys: format, hashing, scopes, and the in-memory view every gateway checks against.

A key is ``ak_<key id>_<secret>``. Only ``HMAC-SHA256(pepper, key)`` is stored,
so a leaked key topic does not leak usable keys; the key id in the clear part
lets a gateway find the record without scanning, then compare hashes in
constant time. Keys that do not follow the format (an operator-chosen
``bootstrap_api_key``) live under the fixed id ``bootstrap``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.errors import AuthError, ForbiddenScope

# definitions:approve: may approve a definitions publication someone else proposed
# (ACTIVATION_DEFINITIONS_REQUIRE_APPROVAL); admin does not imply it.
SCOPES = ("events:write", "profiles:read", "admin", "definitions:approve")
EVENTS_WRITE, PROFILES_READ, ADMIN, APPROVE_DEFINITIONS = SCOPES
BOOTSTRAP_ID = "bootstrap"
_KEY = re.compile(r"^ak_([a-z0-9]{12})_([A-Za-z0-9_\-]{20,})$")


def hash_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def key_id_of(key: str) -> str:
    match = _KEY.match(key)
    return match.group(1) if match else BOOTSTRAP_ID


def new_key() -> tuple[str, str]:
    """(key id, full secret key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"ak_{key_id}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class KeyRecord:
    """What the key topic stores for one key (never the key itself)."""

    key_id: str
    key_hash: str
    scopes: tuple[str, ...]
    name: str = ""
    revoked: bool = False
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["scopes"] = list(self.scopes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        return cls(
            key_id=str(data["key_id"]),
            key_hash=str(data["key_hash"]),
            scopes=tuple(str(s) for s in data.get("scopes", [])),
            name=str(data.get("name", "")),
            revoked=bool(data.get("revoked", False)),
            created_at=str(data.get("created_at", "")),
        )


@dataclass(frozen=True)
class Principal:
    """The authenticated sender of a request."""

    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and ADMIN not in self.scopes:
            raise ForbiddenScope(f"this API key lacks the {scope!r} scope")


def credential_from_header(header: str | None) -> str:
    """The key from ``Bearer <key>`` or HTTP Basic (key as user name, Segment style)."""
    if not header:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError("malformed Basic credentials") from exc
        user = decoded.partition(":")[0]
        if user:
            return user
    raise AuthError("unsupported Authorization header: use Bearer <key> or Basic")


class KeyTable:
    """The current key records by id; thread-safe (the key-topic reader updates it)."""

    def __init__(self, pepper: str) -> None:
        self._pepper = pepper
        self._records: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()

    def apply(self, record: KeyRecord | None, key_id: str) -> None:
        """One key-topic message: a record, or a tombstone (None) that deletes it."""
        with self._lock:
            if record is None:
                self._records.pop(key_id, None)
            else:
                self._records[key_id] = record

    def get(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            return self._records.get(key_id)

    def records(self) -> list[KeyRecord]:
        with self._lock:
            return sorted(self._records.values(), key=lambda r: r.created_at)

    def authenticate(self, key: str) -> Principal:
        record = self.get(key_id_of(key))
        # Compare even when the id is unknown, so timing does not reveal valid ids.
        expected = record.key_hash if record else "0" * 64
        matches = hmac.compare_digest(expected, hash_key(key, self._pepper))
        if record is None or not matches or record.revoked:
            raise AuthError("unknown or revoked API key")
        return Principal(record.key_id, frozenset(record.scopes))
