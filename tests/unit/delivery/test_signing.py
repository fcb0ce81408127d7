"""Requests verify with the reference Standard Webhooks verifier, also during a rotation."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

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


@pytest.mark.parametrize("action_id", ["a1", "bench-0000001", "ünïcode-id"])
def test_signatures_are_the_reference_signers(action_id: str) -> None:
    """Signed here (one key schedule per secret), byte for byte the reference's."""
    payload = body({**COMMAND, "payload": {"text": "grüße \u2603", "n": 3}})
    at = datetime(2026, 11, 30, 1, 2, 3, 999_999, tzinfo=UTC)
    signing = signers([NEW, OLD])
    hdrs = headers(action_id, payload, signing, at, {"Authorization": "t"})
    expected = [Webhook(s).sign(action_id, at, payload.decode()) for s in (NEW, OLD)]
    assert hdrs["webhook-signature"] == " ".join(expected)
    assert hdrs["webhook-timestamp"] == "1796000523" and hdrs["Authorization"] == "t"
    # the key schedule is copied, never consumed: the same signers sign again alike
    again = headers(action_id, payload, signing, at)
    assert again["webhook-signature"] == hdrs["webhook-signature"]


@pytest.mark.parametrize("created", [
    datetime(2026, 11, 30, 1, 0, tzinfo=UTC), datetime(2026, 11, 30, 1, 0, 0, 5, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC), datetime(2026, 3, 29, 2, 30, 0, 120_000,
                                            tzinfo=timezone(timedelta(hours=-7)))])
def test_the_envelope_timestamp_is_the_isoformat_of_created_at(created: datetime) -> None:
    doc = json.loads(body({**COMMAND, "created_at": created}))
    assert doc["timestamp"] == created.astimezone(UTC).isoformat()


def test_compact_keeps_the_bytes() -> None:
    from streams.delivery.signing import compact

    payload = body(COMMAND)
    assert compact(payload) == payload and type(compact(payload)) is bytes
