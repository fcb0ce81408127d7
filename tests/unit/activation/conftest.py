"""Factories for pure activation tests: facts, profiles built from events, an injectable clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.activation.definitions import DefinitionSet, load_definitions
from streams.activation.facts import Facts, HistoryEvent
from streams.activation.governance import in_holdout
from streams.core.profile import Profile, apply_event
from streams.records import Envelope, Identifiers
from streams.settings import REPO_ROOT

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Berlin
DEFINITIONS_DIR = REPO_ROOT / "definitions"


class Clock:
    """Time as a value the test moves; logic never reads the wall clock."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now

    def set(self, at: datetime) -> datetime:
        self.now = at
        return at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def definitions() -> DefinitionSet:
    return load_definitions(DEFINITIONS_DIR)


@pytest.fixture
def facts() -> Callable[..., Facts]:
    """facts(traits=..., consent=..., subscriptions=..., events=[(name, at, props)], ...)"""

    def make(profile_id: str = "p1", *, events: list[tuple[str, datetime, dict[str, Any]]]
             | None = None, **kw: Any) -> Facts:
        history = tuple(
            HistoryEvent(event_id=f"e{i}", name=name, time=at, properties=props)
            for i, (name, at, props) in enumerate(sorted(events or [], key=lambda e: e[1],
                                                         reverse=True)))
        kw.setdefault("identifiers", {"customer_id": [profile_id]})
        return Facts(profile_id=profile_id, events=history, **kw)

    return make


@pytest.fixture
def envelope() -> Callable[..., Envelope]:
    def make(event_id: str, name: str, at: datetime, customer: str = "c1",
             payload: dict[str, Any] | None = None, **props: Any) -> Envelope:
        return Envelope(event_id=event_id, event_name=name, event_time=at, received_time=at,
                        source="test", identifiers=Identifiers(customer_id=customer),
                        properties=props, payload=payload)

    return make


@pytest.fixture
def profile_of() -> Callable[..., Profile]:
    """The profile after applying ``envelopes`` in order (the real profile code)."""

    def make(profile_id: str, *envelopes: Envelope, base: Profile | None = None) -> Profile:
        profile = base or Profile(profile_id=profile_id)
        for env in envelopes:
            profile = apply_event(profile, env, timedelta(days=7), timeline_limit=50)
        return replace(profile, profile_id=profile_id)

    return make


def pick_profile_id(journey_id: str, percent: float, salt: str, *, held_out: bool) -> str:
    """A deterministic customer id that is (or is not) in a journey's holdout."""
    return next(f"cust-{n}" for n in range(10_000)
                if in_holdout(f"cust-{n}", journey_id, percent, salt) == held_out)


def end_date(days_from_t0: int) -> date:
    return (T0 + timedelta(days=days_from_t0)).date()


@pytest.fixture
def tmp_definitions(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write {relative path: yaml text} into a fresh definitions directory."""

    made: list[Path] = []

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / f"defs{len(made)}"  # a fresh directory per call
        root.mkdir()
        made.append(root)
        for rel, text in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return root

    return make
