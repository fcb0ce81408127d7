"""What an attempt's answer leads to (streams/delivery/attempt.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from streams.delivery.attempt import Answer, Job, dead_reason_text, settle
from streams.delivery.policy import RetryPolicy

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(schedule=[timedelta(seconds=5), timedelta(seconds=60)], jitter=0)
COMMAND = {"action_id": "a1", "channel": "crm", "action_type": "update_crm",
           "profile_id": "p1", "created_at": NOW - timedelta(seconds=1)}


def job(attempts: int = 0) -> Job:
    return Job("actions.crm", 0, 7 if attempts == 0 else None, "actions.crm|crm|a1", "crm",
               COMMAND, b"p1", b"\x00cmd", attempts=attempts,
               first_at=None if attempts == 0 else NOW - timedelta(minutes=1))


def test_2xx_is_delivered_and_forgets_the_command() -> None:
    s = settle(job(), Answer(204, elapsed_s=0.01), POLICY, NOW)
    assert (s.entry.status, s.entry.attempts, s.entry.value) == ("delivered", 1, None)
    assert s.outcome["status"] == "delivered" and s.outcome["http_status"] == 204
    assert s.dead_reason is None and not s.disable


def test_5xx_retries_on_schedule_then_fails() -> None:
    s = settle(job(), Answer(500, body="boom"), POLICY, NOW)
    assert (s.entry.status, s.entry.due, s.entry.value) == (
        "retrying", NOW + timedelta(seconds=5), b"\x00cmd")
    assert s.outcome["next_attempt_at"] == NOW + timedelta(seconds=5)
    s = settle(job(2), Answer(503), POLICY, NOW)
    assert s.entry.status == "failed" and s.dead_reason == "retries_exhausted"
    assert s.entry.first_at == NOW - timedelta(minutes=1) and s.entry.attempts == 3


def test_retry_after_is_honoured() -> None:
    s = settle(job(), Answer(429, retry_after=timedelta(seconds=30)), POLICY, NOW,
               random.Random(0))
    assert s.entry.due == NOW + timedelta(seconds=30)


def test_other_4xx_dead_letters_at_once_with_status_and_body() -> None:
    s = settle(job(), Answer(422, body='{"error": "unknown template"}'), POLICY, NOW)
    assert (s.entry.status, s.dead_reason) == ("dead_lettered", "rejected")
    assert "HTTP 422" in dead_reason_text(s) and "unknown template" in dead_reason_text(s)


def test_410_disables_the_destination() -> None:
    s = settle(job(), Answer(410), POLICY, NOW)
    assert (s.entry.status, s.dead_reason, s.disable) == (
        "disabled", "destination_disabled", True)
    already = settle(job(), Answer(None, "destination disabled", attempted=False), POLICY, NOW,
                     disabled=True)
    assert (already.entry.status, already.disable) == ("disabled", False)


def test_an_open_circuit_costs_no_attempt() -> None:
    s = settle(job(1), Answer(None, "circuit open", attempted=False,
                              retry_after=timedelta(seconds=20)), POLICY, NOW)
    assert (s.entry.status, s.entry.attempts, s.entry.due) == (
        "retrying", 1, NOW + timedelta(seconds=20))
