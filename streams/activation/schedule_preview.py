"""The dry run of a schedule (``scripts/schedules run <id> --dry-run``): who a run would
act on, computed from the profile stage's changelog, not by the workers (which would
act). docs/schedules.md says why the changelog."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.activation.actions import plan_action
from streams.activation.audiences import evaluate
from streams.activation.definitions import DefinitionSet, Schedule
from streams.activation.engine import ActivationState
from streams.activation.facts import facts_from_profile
from streams.activation.schedules import PROFILE_KEYS, governed, target, trigger_of
from streams.core.profile import Profile


@dataclass
class Preview:
    """Who a run of ``schedule`` at ``now`` would act on, from the profile stage's
    changelog records fed in order (scripts/schedules run --dry-run): a later record of a
    key replaces an earlier one, as compaction would. Outcomes are governance's for each
    matched profile without its send history (frequency caps are not checked: the send
    history is in the activation state, not read here)."""

    schedule: Schedule
    definitions: DefinitionSet
    now: datetime
    profiles: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)  # matched profile -> outcome

    def add(self, key: bytes, value: bytes | None) -> None:
        if key.startswith(b"r:"):
            pid = key[2:].decode()
            (self.merged.discard if value is None else self.merged.add)(pid)
        elif key.startswith(PROFILE_KEYS):
            pid = key[len(PROFILE_KEYS):].decode()
            self.outcomes.pop(pid, None)
            self.profiles.discard(pid)
            if value is not None:
                self.profiles.add(pid)
                self._assess(Profile.from_json(value))

    def _assess(self, profile: Profile) -> None:
        facts = facts_from_profile(profile)
        condition = target(self.schedule, self.definitions)
        if condition is None or not evaluate(condition, facts, self.now):
            return
        send, write = self.schedule.action, self.schedule.update_profile
        if send is None:  # a data action: governance does not apply, it would write
            assert write is not None  # noqa: S101 - a schedule has one of the two
            self.outcomes[profile.profile_id] = f"update_profile:{write.op}"
            return
        action = plan_action(profile.profile_id, send,
                             trigger=trigger_of(self.schedule.id, self.now),
                             purpose=self.definitions.purpose_of(send))
        state = ActivationState.new(profile.profile_id)
        _, decisions, _ = governed(self.schedule, state, action, facts, self.now,
                                   self.definitions)
        self.outcomes[profile.profile_id] = f"{decisions[0].outcome}:{decisions[0].rule}"

    def summary(self, first: int = 10) -> dict[str, Any]:
        matched = sorted(pid for pid in self.outcomes if pid not in self.merged)
        counts: dict[str, int] = {}
        for pid in matched:
            counts[self.outcomes[pid]] = counts.get(self.outcomes[pid], 0) + 1
        return {"schedule": self.schedule.id, "at": self.now.isoformat(),
                "profiles": len(self.profiles - self.merged), "matched": len(matched),
                "outcomes": dict(sorted(counts.items())),
                "first": [{"profile_id": pid, "outcome": self.outcomes[pid]}
                          for pid in matched[:first]]}
