"""The request a destination receives, following Standard Webhooks v1.

Body (JSON, the spec's recommended envelope)::

    {"type": "email.send_email", "timestamp": "<created_at>", "data": {<the ActionCommand>}}

Headers: ``webhook-id`` = the action id (the same on every attempt and after a redelivery,
so receivers can drop repeats), ``webhook-timestamp`` = Unix seconds of this attempt,
``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per
signing secret, space-separated (a rotation: receivers accept any).

The secrets are parsed by the reference ``standardwebhooks`` package, and the tests check
every signature with its verifier and against its ``Webhook.sign``. The HMAC itself is
computed here, on the hot path: the reference signer sets up the key for every request
and decodes and re-encodes the whole body to sign it, about half of the signing time.
"""

from __future__ import annotations

import hashlib
import hmac
from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from math import floor
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook

from streams.errors import ConfigError

_BODY_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def body(command: Mapping[str, Any]) -> bytes:
    """The request body for a decoded ActionCommand (times as ISO 8601 UTC)."""
    created = command["created_at"]
    return compact(orjson.dumps({
        "type": f"{command['channel']}.{command['action_type']}",
        "timestamp": _iso(created) if isinstance(created, datetime) else created,
        # a decoded command is a dict already: orjson takes it as it is, no copy
        "data": command if isinstance(command, dict) else dict(command),
    }, option=_BODY_OPTIONS))


def compact(data: bytes) -> bytes:
    """``data`` in an allocation of its own size. orjson's output keeps the whole buffer
    it was written in (4 KB or more): a body queued with its job, or a record staged
    until the next commit, would hold that much, and each new one cost fresh pages
    (about three page faults per action, many times what the copy costs)."""
    return memoryview(data).tobytes()


def body_or_none(command: Mapping[str, Any]) -> bytes | None:
    """:func:`body`, or None if it cannot be written (the executor writes it at accept;
    on None the lane writes it and fails there as it always did: logged, unsettled)."""
    try:
        return body(command)
    except Exception:
        return None


def _iso(at: datetime) -> orjson.Fragment:
    """``at.astimezone(UTC).isoformat()`` as a JSON string, written by orjson: the same
    text ("+00:00", microseconds only when set) in a third of the time."""
    return orjson.Fragment(orjson.dumps(at if at.tzinfo is UTC else at.astimezone(UTC)))


class Signer:
    """One signing secret. The HMAC key schedule is computed once; each request copies
    it (two hash states) instead of hashing the key again."""

    __slots__ = ("_mac",)

    def __init__(self, secret: str) -> None:
        key = Webhook(secret)._whsecret  # the reference parsing of whsec_<base64>
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, action_id: str, timestamp: str, payload: bytes) -> str:
        """``v1,<signature>``: HMAC-SHA256 of ``id.timestamp.body``, as the reference."""
        mac = self._mac.copy()
        mac.update(f"{action_id}.{timestamp}.".encode())
        mac.update(payload)
        return "v1," + b2a_base64(mac.digest(), newline=False).decode()


def signers(secrets: Sequence[str]) -> list[Signer]:
    """One signer per secret (``whsec_<base64>`` or base64); a bad one fails fast."""
    out = []
    for secret in secrets:
        try:
            out.append(Signer(secret))
        except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
            raise ConfigError(
                "a delivery signing secret is not base64 (whsec_<base64 of 24-64 bytes>): "
                f"{type(exc).__name__}") from exc
    return out


def headers(action_id: str, payload: bytes, signing: Sequence[Signer], at: datetime,
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Standard Webhooks headers for one attempt at ``at`` (any zone: the instant counts,
    whole seconds rounded down as the reference does)."""
    timestamp = str(floor(at.timestamp()))
    out = {"content-type": "application/json", "webhook-id": action_id,
           "webhook-timestamp": timestamp}
    if signing:
        out["webhook-signature"] = " ".join(s.sign(action_id, timestamp, payload)
                                            for s in signing)
    if extra:
        out.update(extra)
    return out
