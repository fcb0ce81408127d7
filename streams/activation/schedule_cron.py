"""A schedule's cron instants, read in its time zone (streams/activation/schedules.py runs
the ticks; docs/schedules.md explains the whole)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from streams.activation.definitions import Schedule


def fingerprint(schedule: Schedule) -> str:
    return f"{schedule.cron} {schedule.timezone}"


def next_tick(schedule: Schedule, after: datetime) -> datetime:
    """The first cron instant strictly after ``after`` (UTC). The expression is read in the
    schedule's zone (cronsim gets an aware local time), so 09:00 stays 09:00 local across
    DST; a time the spring change skips runs at the first valid minute after it, and one
    the autumn change repeats runs once (Debian cron's rules, which cronsim follows)."""
    local = after.astimezone(ZoneInfo(schedule.timezone))
    return next(CronSim(schedule.cron, local)).astimezone(UTC)


def latest_tick(schedule: Schedule, at: datetime) -> datetime | None:
    """The last cron instant at or before ``at`` (UTC), None if there is none in 50 years."""
    # cronsim's reverse iteration gives instants strictly before its start: start one
    # second after ``at`` (cron instants are whole seconds), computed in UTC.
    start = (at.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1))
    try:
        found = next(CronSim(schedule.cron, start.astimezone(ZoneInfo(schedule.timezone)),
                             reverse=True))
    except StopIteration:
        return None
    return found.astimezone(UTC)
