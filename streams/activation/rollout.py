"""Staged rollout of a definitions version: live first for a QA audience or a share of
profiles, the version before it (``stable``) for everyone else, until ``scripts/
definitions promote`` (the candidate for all) or ``rollback`` (the stable one again),
each a new publication, so the history says who did what when.

Which set a profile gets is decided per profile, deterministically: in a ``percent``
rollout by a hash of the profile id and the candidate's version (the same profiles
throughout, whatever worker), in an ``audience`` rollout by the profile's membership
of that audience (as its activation state last recorded it). Decisions and commands
carry the version that made them (``definitions_version``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from streams.activation.definitions import DefinitionError, DefinitionSet

_BUCKETS = 10_000


@dataclass(frozen=True)
class Rollout:
    stable_sequence: int  # the publication everyone outside the cohort keeps
    percent: float | None = None
    audience: str | None = None

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.audience is None):
            raise DefinitionError("a rollout is for a percentage of profiles or an audience")
        if self.percent is not None and not 0 <= self.percent <= 100:
            raise DefinitionError(f"rollout percent {self.percent} is not within 0..100")

    def to_dict(self) -> dict[str, Any]:
        return {"stable_sequence": self.stable_sequence, "percent": self.percent,
                "audience": self.audience}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Rollout:
        return cls(int(doc["stable_sequence"]), doc.get("percent"), doc.get("audience"))

    def describe(self) -> str:
        who = (f"{self.percent:g}% of profiles" if self.percent is not None
               else f"audience {self.audience}")
        return f"staged for {who}; sequence {self.stable_sequence} for the others"


def in_cohort(rollout: Rollout, profile_id: str, candidate_version: str,
              memberships: Collection[str]) -> bool:
    if rollout.audience is not None:
        return rollout.audience in memberships
    digest = hashlib.sha256(f"rollout\x1f{candidate_version}\x1f{profile_id}".encode()).digest()
    share = round((rollout.percent or 0) * _BUCKETS / 100)
    return int.from_bytes(digest[:8], "big") % _BUCKETS < share


def for_profile(candidate: DefinitionSet, rollout: Rollout | None,
                stable: DefinitionSet | None, profile_id: str,
                memberships: Collection[str] = ()) -> DefinitionSet:
    """The definitions that decide for ``profile_id``."""
    if rollout is None or stable is None:
        return candidate
    return candidate if in_cohort(rollout, profile_id, candidate.version, memberships) \
        else stable
