"""What an attempt's answer means, and when to try again. Pure: no I/O, no clock.

Classification (Standard Webhooks, RudderStack's router):

=====================  =============================================================
2xx                    ``delivered``
408, 429, 5xx,         ``retry`` (429/503 honour ``Retry-After``)
timeout, connection
410 Gone               ``disable``: the receiver says the endpoint is gone for good;
                       the destination stops until ``scripts/delivery enable``
other 4xx (and 1xx,    ``dead``: a request the receiver refuses will be refused again;
3xx: no redirects)     dead-lettered at once with the status and the response body
=====================  =============================================================

Retries follow a schedule of delays (default: Standard Webhooks' 5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 14 h, 20 h, 24 h: about three days), each with jitter so a recovered
receiver is not hit by every waiting retry at once. After the last, the action has
``failed`` and is dead-lettered. Why not tenacity or stamina: their loops wait inside
a coroutine, and a waiting retry here must survive a crash, so it is written to the
delivery ledger (streams/delivery/ledger.py) with its due time instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

Verdict = Literal["delivered", "retry", "dead", "disable"]
STANDARD_WEBHOOKS_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400))
RETRIABLE_4XX = frozenset({408, 425, 429})
MAX_RETRY_AFTER = timedelta(hours=24)  # a receiver asking for more is capped


def classify(status: int | None) -> Verdict:
    """``status`` None: no answer (timeout, connection refused or reset)."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "disable"
    if status in RETRIABLE_4XX or status >= 500:
        return "retry"
    return "dead"


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as a delay; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - now
    return max(timedelta(0), min(delay, MAX_RETRY_AFTER))


@dataclass(frozen=True)
class RetryPolicy:
    schedule: Sequence[timedelta] = STANDARD_WEBHOOKS_SCHEDULE
    jitter: float = 0.1  # each delay is stretched or shrunk by up to this fraction

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1  # the first attempt, then one per delay

    def next_delay(self, attempts: int, asked: timedelta | None,
                   rng: random.Random | None = None) -> timedelta | None:
        """The wait after ``attempts`` failed attempts; None when the schedule is spent.
        A receiver's ``Retry-After`` is honoured when it asks for longer."""
        if attempts >= self.max_attempts:
            return None
        base = self.schedule[attempts - 1]
        spread = (rng or random).uniform(-self.jitter, self.jitter)  # noqa: S311 - not crypto
        delay = base * (1 + spread)
        return max(delay, asked) if asked is not None else delay
