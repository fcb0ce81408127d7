"""Definitions as the console shows them: every publication (who, when, which version,
staged or not), the proposals awaiting a second key, the rollout in force, and the
difference between any two (streams/activation/diff.py, what ``scripts/definitions
diff`` prints).

:class:`History` follows the definitions topic (streams/follower.py) and keeps every
valid publication and open proposal; records it cannot read are skipped as the workers
skip them (their validation is ``decode_record``'s).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from streams.activation.approval import Proposal, is_proposal
from streams.activation.definitions import DefinitionError, DefinitionSet
from streams.activation.diff import diff
from streams.activation.distribution import (
    Published,
    choose_in_force,
    decode_record,
    ensure_definitions_topic,
)
from streams.follower import Follower
from streams.settings import Settings
from streams.topics import DEFINITIONS

log = logging.getLogger(__name__)


class History:
    """Publications by key (a racing pair of one sequence both kept) and proposals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[bytes, Published] = {}
        self._order: list[bytes] = []
        self._proposals: dict[bytes, Proposal] = {}
        self._in_force: Published | None = None

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if is_proposal(key):
            self._proposal(key, value)
            return
        try:
            published = decode_record(key, value)
        except DefinitionError as exc:
            log.warning("skipping a definitions record the console cannot read: %s", exc)
            return
        with self._lock:
            if key not in self._by_key:
                self._order.append(key)
            self._by_key[key] = published
            self._in_force = choose_in_force(self._in_force, published)

    def _proposal(self, key: bytes, value: bytes | None) -> None:
        try:
            proposal = None if value is None else Proposal.decode(value)
        except (DefinitionError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping an unreadable proposal: %s", exc)
            return
        with self._lock:
            if proposal is None:  # approved or withdrawn: a tombstone
                self._proposals.pop(key, None)
            else:
                self._proposals[key] = proposal

    def publications(self) -> list[Published]:
        """Oldest first (by sequence, racing ones in the order they were written)."""
        with self._lock:
            indexed = [(p.sequence, i, p) for i, k in enumerate(self._order)
                       for p in (self._by_key[k],)]
        return [p for _, _, p in sorted(indexed, key=lambda t: (t[0], t[1]))]

    def in_force(self) -> Published | None:
        with self._lock:
            return self._in_force

    def proposals(self) -> list[Proposal]:
        with self._lock:
            return sorted(self._proposals.values(), key=lambda p: p.proposed_at)

    def by_sequence(self, sequence: int) -> Published | None:
        found = [p for p in self.publications() if p.sequence == sequence]
        return found[-1] if found else None

    def definitions(self) -> DefinitionSet | None:
        current = self.in_force()
        return None if current is None else current.definitions


def follow(settings: Settings, history: History) -> Follower:
    return Follower(settings, settings.topic(DEFINITIONS), history.apply,
                    "console-definitions", prepare=lambda: ensure_definitions_topic(settings))


@dataclass(frozen=True)
class VersionRow:
    sequence: int
    version: str
    published_by: str
    published_at: datetime
    rollout: str
    counts: str
    in_force: bool
    stable: bool  # the version everyone outside a staged rollout's cohort keeps


def rows(history: History) -> list[VersionRow]:
    current = history.in_force()
    stable_seq = current.rollout.stable_sequence if current and current.rollout else None
    out = []
    for p in reversed(history.publications()):
        d = p.definitions
        counts = (f"{len(d.audiences)} audiences, {len(d.journeys)} journeys, "
                  f"{len(d.destinations)} destinations, {len(d.schedules)} schedules")
        out.append(VersionRow(p.sequence, p.version, p.published_by, p.published_at,
                              p.rollout.describe() if p.rollout else "everyone", counts,
                              p is current, p.sequence == stable_seq))
    return out


def rollout_state(history: History) -> str:
    """One sentence: which version decides for whom now."""
    current = history.in_force()
    if current is None:
        return "No definitions are published yet."
    head = f"Sequence {current.sequence} (version {current.version[:12]})"
    if current.rollout is None:
        return f"{head} is in force for every profile."
    return f"{head} is {current.rollout.describe()}."


@dataclass(frozen=True)
class DiffLine:
    text: str
    tone: str  # add, remove, change, context, head


def diff_lines(old: Published, new: Published) -> list[DiffLine]:
    lines = diff(old.definitions, new.definitions)
    if not lines:
        return [DiffLine(f"no change (version {new.version})", "head")]
    return [DiffLine(line, _tone(line)) for line in lines]


def _tone(line: str) -> str:
    stripped = line.strip()
    if line.startswith("version ") or stripped.startswith(("@@", "---", "+++")):
        return "head"
    if line.startswith("+ ") or (line.startswith("    ") and stripped.startswith("+")):
        return "add"
    if line.startswith("- ") or (line.startswith("    ") and stripped.startswith("-")):
        return "remove"
    if line.startswith("~ "):
        return "change"
    return "context"
