"""A read profile's timeline kept as its entries' JSON (streams/core/timeline_json.py)
writes and reads exactly what the decoded timeline does, whatever the events."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pydantic_core
import pytest

from streams.core import profile as profile_module
from streams.core import timeline_json
from streams.core.profile import Profile, apply_event, merge_profiles
from streams.core.profile_codec import fields
from streams.core.timeline_json import ENTRIES
from streams.records import Envelope

WINDOW = timedelta(seconds=5)
VALUES: list[Any] = [None, True, 7, 2**64, 1.25, float("nan"), float("inf"), "", 'a"b\\',
                     "\u00e9\U0001f600", "null", '"event_id":"e3"']
IDS = ["e0", "e1", "e2", "e3", 'e"4', "e\u00e9", "e\x1f", "e\\7"]


@pytest.fixture(autouse=True)
def every_profile_kept_as_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short profiles are read whole (below LAZY_FROM_BYTES); here every one is kept."""
    monkeypatch.setattr(profile_module, "LAZY_FROM_BYTES", 0)


def _stored(profile: Profile) -> Profile:
    return Profile.from_json(profile.to_json())


def _random_events(event: Callable[..., Envelope], seed: int, count: int) -> list[Envelope]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        props = {rng.choice(["k", "event_id", "x"]): rng.choice(VALUES)
                 for _ in range(rng.randint(0, 3))}
        name = rng.choice(["identify", "page_viewed", "purchase_completed"])
        # ids repeat (resends), times go back and forth (late events, ties)
        out.append(event(rng.choice(IDS) + str(rng.randint(0, 3)), name,
                         rng.randint(0, 40), props=props))
    return out


def test_events_on_stored_profiles_write_what_decoded_ones_do(
        event: Callable[..., Envelope]) -> None:
    """Each event applied to the profile as read back (entries kept as JSON) and to the
    profile as it was (timeline decoded): the same bytes, the same profile, every step."""
    for seed in range(40):
        lazy = general = Profile("p1")
        limit = 1 + seed % 6
        for envelope in _random_events(event, seed, 25):
            lazy = apply_event(_stored(lazy), envelope, WINDOW, limit)
            general = apply_event(general, envelope, WINDOW, limit)
            assert lazy.to_json() == general.to_json() \
                == pydantic_core.to_json(fields(general))
            assert repr(lazy) == repr(general)  # repr: NaN is not equal to itself


def test_the_usual_event_keeps_the_entries_undecoded(event: Callable[..., Envelope]) -> None:
    stored = _stored(apply_event(Profile("p1"), event("e1", "page_viewed", 1), WINDOW, 3))
    assert ENTRIES in stored.__dict__ and "timeline" not in stored.__dict__
    newer = apply_event(stored, event("e2", "page_viewed", 2), WINDOW, 3)
    assert "timeline" not in newer.__dict__ and len(newer.__dict__[ENTRIES]) == 2
    assert [e["event_id"] for e in newer.timeline] == ["e2", "e1"]


def test_only_long_profiles_are_kept_as_read(event: Callable[..., Envelope],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "LAZY_FROM_BYTES", 4096)
    profile = Profile("p1")
    for i in range(60):
        profile = apply_event(profile, event(f"e{i}", "page_viewed", i), WINDOW, 100)
        raw = profile.to_json()
        assert (ENTRIES in Profile.from_json(raw).__dict__) == (len(raw) > 4096)
    assert ENTRIES in Profile.from_json(raw).__dict__


def test_late_and_repeated_events_take_the_general_path(
        event: Callable[..., Envelope]) -> None:
    stored = _stored(apply_event(Profile("p1"), event("e2", "page_viewed", 2), WINDOW, 3))
    for envelope in (event("e1", "page_viewed", 1), event("e2", "identify", 3)):
        applied = apply_event(stored, envelope, WINDOW, 3)
        assert ENTRIES not in applied.__dict__


def test_a_changed_timeline_replaces_the_entries(event: Callable[..., Envelope]) -> None:
    stored = _stored(apply_event(Profile("p1"), event("e1", "page_viewed", 1), WINDOW, 3))
    assert stored.timeline[0]["event_id"] == "e1"  # decoded, entries still kept
    emptied = stored.evolve(timeline=[])
    assert ENTRIES not in emptied.__dict__ and emptied.to_json() == \
        pydantic_core.to_json(emptied.__dict__)
    merged = merge_profiles(_stored(stored), stored.evolve(profile_id="p2"), 3)
    assert [e["event_id"] for e in merged.timeline] == ["e1"]


def test_entries_read_back_as_the_timeline() -> None:
    timeline = [{"event_id": "e1", "event_name": "x", "time_us": 1, "summary": "",
                 "late": False, "properties": {"nan": float("nan")}}]
    entries = [timeline_json.encode_entry(e) for e in timeline]
    assert entries[0] == pydantic_core.to_json(timeline[0])  # NaN: pydantic-core's
    assert repr(timeline_json.decode(entries)) == repr(timeline)
