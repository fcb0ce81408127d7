"""Exact deduplication by event id within a window: keys and the decision.

The store keeps, per event id, a marker with the wall-clock time the id was first
applied (see streams/core/pipeline.py). A marker older than the window counts as
absent, so the same id seen again after the window is a new event, as the
contract says. Not probabilistic: one marker per id.
"""

from __future__ import annotations

from datetime import datetime, timedelta

DEDUP_PREFIX = b"d:"


def dedup_key(event_id: str) -> bytes:
    return DEDUP_PREFIX + event_id.encode("utf-8")


def within_window(first_seen: datetime, now: datetime, window: timedelta) -> bool:
    """True if an id first applied at ``first_seen`` still counts as seen at ``now``."""
    return now - first_seen < window
