"""Profile search by any identifier, the way the platform stores it: customer and
anonymous ids as given, email and phone normalised and SHA-256 hashed (the console
hashes what the operator types, so no clear address reaches a worker or a log), their
hashes as such, or a profile id."""

from __future__ import annotations

import re
from dataclasses import dataclass

from streams.records import normalize_email, normalize_phone, sha256_hex

KINDS = {
    "auto": "any identifier",
    "customer_id": "customer id",
    "email": "email",
    "phone": "phone (international)",
    "anonymous_id": "anonymous id",
    "email_sha256": "email SHA-256",
    "phone_sha256": "phone SHA-256",
    "profile_id": "profile id",
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PROFILE = re.compile(r"^p-[0-9a-f]{20}$")
_PHONE = re.compile(r"^(\+|00)[0-9 ()./-]{8,}$")


class BadQuery(ValueError):
    """The search cannot be asked as typed; the message says why."""


@dataclass(frozen=True)
class Query:
    """What to ask the profile API: ``params`` for ``/v1/profiles``, or a profile id."""

    kind: str
    params: dict[str, str]
    profile_id: str | None = None

    def describe(self) -> str:
        if self.profile_id:
            return f"profile {self.profile_id}"
        name, value = next(iter(self.params.items()))
        return f"{name} {value}"


def guess_kind(value: str) -> str:
    """The likeliest kind of a typed identifier (a customer id when nothing else fits)."""
    if "@" in value:
        return "email"
    if _PROFILE.match(value):
        return "profile_id"
    if _SHA256.match(value):
        return "email_sha256"
    if _PHONE.match(value):
        return "phone"
    return "customer_id"


def parse_query(kind: str, raw: str) -> Query:
    value = raw.strip()
    if not value:
        raise BadQuery("type an identifier to search for")
    if kind not in KINDS:
        raise BadQuery(f"unknown identifier kind {kind!r}")
    if kind == "auto":
        kind = guess_kind(value)
    if kind == "profile_id":
        return Query(kind, {}, value)
    if kind in ("email", "phone"):
        normalize = normalize_email if kind == "email" else normalize_phone
        try:
            return Query(kind, {f"{kind}_sha256": sha256_hex(normalize(value))})
        except ValueError as exc:
            raise BadQuery(str(exc)) from exc
    if kind in ("email_sha256", "phone_sha256") and not _SHA256.match(value.lower()):
        raise BadQuery("a SHA-256 is 64 hexadecimal characters")
    return Query(kind, {kind: value.lower() if kind.endswith("sha256") else value})
