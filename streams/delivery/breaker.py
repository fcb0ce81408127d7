"""A circuit breaker per destination: after ``threshold`` failures in a row it opens for
``cooldown``; then one probe is let through (half-open): success closes it, failure opens
it again. While open no request is made: the actions wait (durably, as retries that
cost no attempt) instead of piling timeouts on a receiver that is down, and the lane's
concurrency stays free. Pure: the caller passes the (monotonic) time in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class Breaker:
    threshold: int = 5
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> State:
        if self.opened_at is None:
            return "closed"
        return "open" if now < self.opened_at + self.cooldown_s else "half_open"

    def allow(self, now: float) -> bool:
        """May a request go now? In half-open, only one at a time (the probe)."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "open" or self.probing:
            return False
        self.probing = True
        return True

    def reopens_at(self, now: float) -> float:
        """When a request refused now may try again."""
        return now if self.opened_at is None else max(now, self.opened_at + self.cooldown_s)

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = now, False
