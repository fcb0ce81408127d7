"""One delivery job and what its attempt's answer leads to. Pure: the executor does the
I/O (streams/delivery/executor.py), this decides.

:func:`settle` turns an attempt's :class:`Answer` into a :class:`Settlement`: the ledger
entry to write, the ``DeliveryOutcome`` record to publish, a dead letter (with the status
and the response body) when the action gives up, whether the destination must be
disabled (410), and when to try again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from streams.activation.model import stable_id
from streams.delivery.ledger import Entry, Status
from streams.delivery.policy import RetryPolicy, Verdict, classify

BODY_KEPT = 2048  # characters of a response body kept in outcomes and dead letters
DEAD_REASONS: dict[Status, str] = {"failed": "retries_exhausted", "dead_lettered": "rejected",
                                   "disabled": "destination_disabled"}


@dataclass(slots=True)  # not frozen: a frozen init costs a setattr call per field
class Job:
    """One (command, destination) delivery, on its way or waiting."""

    topic: str  # the action topic and partition the command came from
    partition: int
    offset: int | None  # the input offset it settles (None: a retry from the ledger)
    key: str  # ledger key
    destination: str
    command: dict[str, Any]  # the decoded ActionCommand
    record_key: bytes | None
    record_value: bytes
    attempts: int = 0  # attempts made before this one
    first_at: datetime | None = None
    generation: int = 0  # the partition's assignment it belongs to (a revoke drops it)
    redrives: int = 0  # times it was re-driven from the dead letters already
    body: bytes | None = None  # the request body, written at accept (None: by the lane)

    def next(self, entry: Entry) -> Job:
        """The same job, waiting for its next attempt (``entry``: the ledger's); its body
        is written again then, not held while it waits (hours, maybe)."""
        return replace(self, offset=None, attempts=entry.attempts, first_at=entry.first_at,
                       body=None)


@dataclass(slots=True)
class Answer:
    status: int | None  # None: no HTTP answer
    error: str | None = None  # timeout, connection refused, ... or the breaker
    body: str = ""
    retry_after: timedelta | None = None
    elapsed_s: float = 0.0
    attempted: bool = True  # False: not sent (circuit open): costs no attempt


@dataclass(slots=True)
class Settlement:
    entry: Entry
    outcome: dict[str, Any]  # DeliveryOutcome
    verdict: Verdict
    dead_reason: str | None = None  # set when the job gives up: dead-letter it
    disable: bool = False


def _status(verdict: Verdict, delay: timedelta | None) -> Status:
    if verdict == "delivered":
        return "delivered"
    if verdict == "disable":
        return "disabled"
    if verdict == "dead":
        return "dead_lettered"
    return "retrying" if delay is not None else "failed"


def settle(job: Job, answer: Answer, policy: RetryPolicy, now: datetime,
           rng: random.Random | None = None, disabled: bool = False,
           horizon: timedelta | None = None) -> Settlement:
    """What to record after ``answer`` to ``job``'s attempt made at ``now``. ``disabled``:
    the destination is disabled or gone, nothing was sent: the job gives up at once.
    ``horizon``: past it since the first attempt, a job refused by an open circuit (no
    attempt counted) has failed too: a destination down for good ends in dead letters."""
    attempts = job.attempts + (1 if answer.attempted else 0)
    verdict: Verdict = classify(answer.status) if answer.attempted else "retry"
    if disabled:
        verdict = "disable"
    delay = None
    if verdict == "retry":
        expired = horizon is not None and job.first_at is not None \
            and now - job.first_at >= horizon
        delay = (policy.next_delay(attempts, answer.retry_after, rng) if answer.attempted
                 else None if expired else answer.retry_after or timedelta(seconds=1))
    status = _status(verdict, delay)
    due = now + delay if delay is not None else None
    first = job.first_at or now
    entry = Entry(status=status, attempts=attempts, first_at=first, at=now, due=due,
                  key=job.record_key if due else None, value=job.record_value if due else None)
    return Settlement(entry, outcome_record(job, answer, status, attempts, now, due), verdict,
                      DEAD_REASONS.get(status), verdict == "disable" and not disabled)


def outcome_record(job: Job, answer: Answer, status: Status, attempts: int, now: datetime,
                   due: datetime | None) -> dict[str, Any]:
    cmd = job.command
    return {
        "outcome_id": stable_id("outcome", job.key, attempts, status,
                                None if answer.attempted else now.isoformat()),
        "action_id": cmd["action_id"], "destination": job.destination,
        "channel": cmd["channel"], "action_type": cmd["action_type"],
        "profile_id": cmd["profile_id"], "status": status, "attempt": attempts,
        "http_status": answer.status, "error": answer.error,
        "response_body": answer.body[:BODY_KEPT] or None,
        "next_attempt_at": due, "duration_ms": round(answer.elapsed_s * 1000, 3),
        "occurred_at": now, "command_created_at": cmd.get("created_at"),
    }


def dead_reason_text(settlement: Settlement) -> str:
    o = settlement.outcome
    what = f"HTTP {o['http_status']}" if o["http_status"] is not None else (o["error"] or "")
    body = f": {o['response_body']}" if o["response_body"] else ""
    return (f"destination {o['destination']} after {o['attempt']} attempt(s): "
            f"{what}{body}")[:4000]


def closed(job: Job, answer: Answer, now: datetime) -> Settlement:
    """A waiting retry of an erased profile: failed, and no dead letter (it would keep
    the erased data)."""
    entry = Entry("failed", job.attempts, job.first_at or now, now)
    return Settlement(entry, outcome_record(job, answer, "failed", job.attempts, now, None),
                      "dead")


def parked(now: datetime, answer: Answer) -> Entry:
    """When a job refused by an open circuit tries again (nothing written)."""
    wait = answer.retry_after or timedelta(seconds=1)
    return Entry("retrying", 0, now, now, now + wait)
