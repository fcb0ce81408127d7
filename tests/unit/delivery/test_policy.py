"""Retry classification, Retry-After and the schedule (streams/delivery/policy.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from streams.delivery.breaker import Breaker
from streams.delivery.policy import (
    STANDARD_WEBHOOKS_SCHEDULE,
    RetryPolicy,
    classify,
    retry_after,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "delivered"), (204, "delivered"), (None, "retry"), (408, "retry"), (425, "retry"),
    (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"),
    (410, "disable"), (400, "dead"), (401, "dead"), (403, "dead"), (404, "dead"),
    (422, "dead"), (301, "dead"), (302, "dead"),
])
def test_classify(status: int | None, verdict: str) -> None:
    assert classify(status) == verdict


def test_retry_after_seconds_date_and_garbage() -> None:
    assert retry_after("7", NOW) == timedelta(seconds=7)
    assert retry_after("Mon, 30 Nov 2026 12:00:30 GMT", NOW) == timedelta(seconds=30)
    assert retry_after("Mon, 30 Nov 2026 11:00:00 GMT", NOW) == timedelta(0)  # past
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None
    assert retry_after("999999999", NOW) == timedelta(hours=24)  # capped


def test_default_schedule_is_standard_webhooks_with_jitter() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 10
    assert sum(STANDARD_WEBHOOKS_SCHEDULE, timedelta()) > timedelta(hours=74)
    rng = random.Random(1)
    for attempts, base in enumerate(STANDARD_WEBHOOKS_SCHEDULE, start=1):
        delay = policy.next_delay(attempts, None, rng)
        assert delay is not None and base * 0.9 <= delay <= base * 1.1
    assert policy.next_delay(10, None, rng) is None  # spent: the action failed


def test_a_longer_retry_after_wins_a_shorter_does_not() -> None:
    policy = RetryPolicy(schedule=[timedelta(seconds=5)], jitter=0)
    assert policy.next_delay(1, timedelta(seconds=60)) == timedelta(seconds=60)
    assert policy.next_delay(1, timedelta(seconds=1)) == timedelta(seconds=5)


def test_breaker_opens_probes_and_closes() -> None:
    b = Breaker(threshold=3, cooldown_s=10)
    for t in range(3):
        assert b.allow(t)
        b.failed(t)
    assert b.state(3) == "open" and not b.allow(5)
    assert b.reopens_at(5) == 12
    assert b.allow(12.5)  # half-open: the probe
    assert not b.allow(12.6)  # only one probe at a time
    b.failed(13)
    assert b.state(14) == "open"
    assert b.allow(23.5)
    b.succeeded()
    assert b.state(24) == "closed" and b.allow(24) and b.allow(24)
