"""The request a destination receives, following Standard Webhooks v1.

Body (JSON, the spec's recommended envelope)::

    {"type": "email.send_email", "timestamp": "<created_at>", "data": {<the ActionCommand>}}

Headers: ``webhook-id`` = the action id (the same on every attempt and after a redelivery,
so receivers can drop repeats), ``webhook-timestamp`` = Unix seconds of this attempt,
``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per
signing secret, space-separated (a rotation: receivers accept any). Signatures come from
the reference ``standardwebhooks`` package, not our own HMAC code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook

from streams.errors import ConfigError


def body(command: Mapping[str, Any]) -> bytes:
    """The request body for a decoded ActionCommand (times as ISO 8601 UTC)."""
    created = command["created_at"]
    return orjson.dumps({
        "type": f"{command['channel']}.{command['action_type']}",
        "timestamp": created.astimezone(UTC).isoformat() if isinstance(created, datetime)
        else created,
        "data": dict(command),
    }, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def signers(secrets: Sequence[str]) -> list[Webhook]:
    """One signer per secret (``whsec_<base64>`` or base64); a bad one fails fast."""
    out = []
    for secret in secrets:
        try:
            out.append(Webhook(secret))
        except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
            raise ConfigError(
                "a delivery signing secret is not base64 (whsec_<base64 of 24-64 bytes>): "
                f"{type(exc).__name__}") from exc
    return out


def headers(action_id: str, payload: bytes, signing: Sequence[Webhook], at: datetime,
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Standard Webhooks headers for one attempt at ``at``."""
    at = at.astimezone(UTC)  # the reference signer replaces the zone rather than converting
    out = {"content-type": "application/json", "webhook-id": action_id,
           "webhook-timestamp": str(int(at.timestamp()))}
    if signing:
        text = payload.decode()
        out["webhook-signature"] = " ".join(s.sign(action_id, at, text) for s in signing)
    out.update(extra or {})
    return out
