"""Requests verify with the reference Standard Webhooks verifier, also during a rotation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streams.delivery.signing import body, headers, signers
from streams.errors import ConfigError

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
COMMAND = {"action_id": "a1", "channel": "email", "action_type": "send_email",
           "profile_id": "p1", "payload": {"template_id": "t"},
           "created_at": datetime(2026, 11, 30, 1, 0, tzinfo=UTC)}


def test_each_secret_of_a_rotation_verifies() -> None:
    payload = body(COMMAND)
    hdrs = headers("a1", payload, signers([NEW, OLD]), datetime.now(UTC))
    assert hdrs["webhook-id"] == "a1" and hdrs["webhook-signature"].count("v1,") == 2
    for secret in (OLD, NEW):
        doc = Webhook(secret).verify(payload, hdrs)
        assert doc["type"] == "email.send_email" and doc["data"]["action_id"] == "a1"
        assert doc["timestamp"] == "2026-11-30T01:00:00+00:00"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(payload, hdrs)


def test_a_zone_other_than_utc_signs_the_right_instant() -> None:
    from zoneinfo import ZoneInfo

    at = datetime.now(ZoneInfo("Europe/Berlin"))
    hdrs = headers("a1", b"{}", signers([NEW]), at)
    assert hdrs["webhook-timestamp"] == str(int(at.timestamp()))
    Webhook(NEW).verify(b"{}", hdrs, json_parse=False)


def test_a_bad_secret_fails_fast() -> None:
    with pytest.raises(ConfigError, match="not base64"):
        signers(["whsec_"])
