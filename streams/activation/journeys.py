"""Journeys as a pure state machine over one profile's state.

The runtime stores one :class:`JourneyState` per profile (``model_dump_json``) and calls
:func:`on_event`, :func:`on_audience_change` and :func:`on_timer`; each returns the new
state and what the steps planned (:data:`streams.activation.model.Planned`: actions to
pass through governance, data actions, experiment assignments). :func:`next_wake`
is the one journey timer per profile.

Rules:
- one active enrollment per customer and journey; re-entry follows ``journey.reentry``
  (``never``; ``after_exit``; ``{after: P30D}`` counted from the last exit);
- exit criteria (``exit_when.events``) are checked on every event before anything else,
  and leaving the trigger audience ends an audience-triggered journey (``audience_exit``);
- on every exit (criteria, exit step, end of steps, definition gone) the paid-media
  audiences the enrollment added are removed again (``audience_remove``), so an ad
  audience never outlives the enrollment that filled it;
- a step or journey that no longer exists in the definitions in force ends the enrollment;
- a ``split`` step sends the profile down one variant (streams/activation/steps.py),
  remembered on the enrollment and carried by its later actions; an ``update_profile``
  step plans a data action, which the runtime applies to the profile like an event
  (streams/activation/writes.py). Neither waits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streams.activation.actions import plan_action, plan_data
from streams.activation.audiences import evaluate
from streams.activation.definitions import DefinitionSet, Journey, ReentryAfter, SendSpec, Step
from streams.activation.facts import Facts, HistoryEvent, as_datetime
from streams.activation.model import (
    Assignment,
    Planned,
    PlannedAction,
    adopt,
    evolve,
    stable_id,
)
from streams.activation.plans import plan, triggers
from streams.activation.steps import pick_variant

Result = tuple["JourneyState", list[Planned]]


class Enrollment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    journey_id: str
    journey_version: int
    enrollment_id: str  # "<journey id>#<n>": deterministic on replay
    trigger: str  # event id or audience transition that enrolled the customer
    entered_at: AwareDatetime
    step_id: str  # the wait or wait_for_event step the enrollment rests on
    wake_at: AwareDatetime | None = None
    waiting_for: str | None = None  # event name of a wait_for_event step
    added_audiences: dict[str, str] = Field(default_factory=dict)  # audience id -> step id
    variants: dict[str, str] = Field(default_factory=dict)  # split step id -> variant

    def experiments(self) -> dict[str, str]:
        """Its variants as actions and audience changes carry them: keyed by
        ``<journey id>/<split step id>``."""
        if not self.variants:  # most enrollments pass no split step: asked per action
            return {}
        return {f"{self.journey_id}/{step}": v for step, v in sorted(self.variants.items())}


class JourneyState(BaseModel):
    """Everything journeys remember about one profile (lives in a RocksDB table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile_id: str
    active: dict[str, Enrollment] = Field(default_factory=dict)  # journey id -> enrollment
    enrollments: dict[str, int] = Field(default_factory=dict)  # journey id -> count so far
    last_exit: dict[str, AwareDatetime] = Field(default_factory=dict)
    # Enrollments that ran to the end of their steps (not exited): their held actions
    # still leave when due (streams/activation/held.py). The newest few only.
    completed: list[str] = Field(default_factory=list)

    def with_active(self, journey_id: str, enrollment: Enrollment | None, now: datetime,
                    **changes: Any) -> JourneyState:
        active = dict(self.active)
        if enrollment is None:
            active.pop(journey_id, None)
            changes["last_exit"] = {**self.last_exit, journey_id: now}
        else:
            active[journey_id] = enrollment
        return evolve(self, active=active, **changes)


def forget_withheld_add(state: JourneyState, action: PlannedAction) -> JourneyState:
    """Governance withheld an ``audience_add``: nothing to undo on exit for that audience."""
    enr = state.active.get(action.journey_id or "")
    audience = str(action.payload.get("audience_id"))
    if enr is None or action.action_type != "audience_add" \
            or enr.added_audiences.get(audience) != action.step_id:
        return state
    added = {k: v for k, v in enr.added_audiences.items() if k != audience}
    active = {**state.active, enr.journey_id: evolve(enr, added_audiences=added)}
    return evolve(state, active=active)


def next_wake(state: JourneyState) -> datetime | None:
    wakes = [e.wake_at for e in state.active.values() if e.wake_at is not None]
    return min(wakes) if wakes else None


def may_enroll(state: JourneyState, journey: Journey, now: datetime) -> bool:
    if journey.id in state.active:
        return False
    if state.enrollments.get(journey.id, 0) == 0:
        return True
    if journey.reentry == "never":
        return False
    last = state.last_exit.get(journey.id)
    if isinstance(journey.reentry, ReentryAfter):
        return last is not None and now >= last + journey.reentry.after
    return True  # after_exit: the previous enrollment has ended (it is not active)


def _removals(enr: Enrollment, profile_id: str, cause: str) -> list[Planned]:
    return [
        plan_action(profile_id, SendSpec(channel="paid_media", action_type="audience_remove",
                                         purpose="marketing", payload={"audience_id": audience}),
                    journey_id=enr.journey_id, journey_version=enr.journey_version,
                    enrollment_id=enr.enrollment_id, step_id=step_id, trigger=cause,
                    variants=enr.experiments())
        for audience, step_id in sorted(enr.added_audiences.items())
    ]


def _wake_for(step: Step, facts: Facts, now: datetime) -> datetime | None:
    """When a wait step ends; None for a date the profile lacks (then it ends at once)."""
    assert step.wait is not None  # noqa: S101 - only called for wait steps
    if step.wait.duration is not None:
        return now + step.wait.duration
    assert step.wait.until is not None  # noqa: S101 - WaitSpec guarantees one of them
    when = as_datetime(facts.resolve(step.wait.until.date))
    return None if when is None else when + step.wait.until.offset


def _send(enr: Enrollment, step: Step, facts: Facts, cause: str, definitions: DefinitionSet
          ) -> tuple[Enrollment, PlannedAction]:
    assert step.send is not None  # noqa: S101 - only called for send steps
    action = plan_action(facts.profile_id, step.send, journey_id=enr.journey_id,
                         journey_version=enr.journey_version, enrollment_id=enr.enrollment_id,
                         step_id=step.id, trigger=cause,
                         # a send's own purpose wins: the channel's is not looked up
                         purpose=None if step.send.purpose else definitions.purpose_of(step.send),
                         variants=enr.experiments())
    if step.send.action_type not in ("audience_add", "audience_remove"):
        return enr, action  # nothing to undo on exit: the enrollment stays as it is
    audience = step.send.payload.get("audience_id")
    added = dict(enr.added_audiences)
    if step.send.action_type == "audience_add":
        added[str(audience)] = step.id
    else:
        added.pop(str(audience), None)
    return evolve(enr, added_audiences=added), action


def _split(enr: Enrollment, step: Step, profile_id: str, cause: str
           ) -> tuple[Enrollment, Assignment, str]:
    """The profile's variant of a split step: the enrollment remembers it."""
    assert step.split is not None  # noqa: S101 - only called for split steps
    variant = pick_variant(step.split, enr.journey_id, step.id, profile_id)
    assignment = Assignment(
        assignment_id=stable_id("assignment", profile_id, enr.enrollment_id, step.id),
        profile_id=profile_id, journey_id=enr.journey_id, step_id=step.id,
        variant=variant.name, enrollment_id=enr.enrollment_id, caused_by=cause)
    chosen = evolve(enr, variants={**enr.variants, step.id: variant.name})
    return chosen, assignment, variant.next


def _branch(step: Step, facts: Facts, now: datetime) -> str:
    assert step.branch is not None  # noqa: S101 - only called for branch steps
    for case in step.branch.cases:
        if evaluate(case.when, facts, now):
            return case.next
    return step.branch.otherwise


Ran = tuple[Enrollment | None, list[Planned]]


def _run(enr: Enrollment, journey: Journey, start: str | None, facts: Facts, now: datetime,
         cause: str, definitions: DefinitionSet) -> Ran:
    """Execute steps from ``start`` until one waits (enrollment kept) or the journey ends."""
    actions: list[Planned] = []
    current = start
    steps = plan(journey)
    # A cycle of steps without a wait would spin forever: bound the steps run per call.
    for _ in range(2 * len(journey.steps) + 1):
        step = None if current is None else steps.steps.get(current)
        if step is None:
            break
        kind = steps.kinds[step.id]
        if kind == "exit":
            break
        if kind == "send":
            enr, action = _send(enr, step, facts, cause, definitions)
            actions.append(action)
        elif step.update_profile is not None:
            actions.append(plan_data(facts.profile_id, step.update_profile,
                                     journey_id=enr.journey_id, step_id=step.id,
                                     enrollment_id=enr.enrollment_id, trigger=cause))
        elif kind in ("branch", "split"):
            if kind == "branch":
                current = _branch(step, facts, now)
            else:
                enr, assignment, current = _split(enr, step, facts.profile_id, cause)
                actions.append(assignment)
            continue
        elif kind == "wait_for_event":
            assert step.wait_for_event is not None  # noqa: S101 - kind says so
            return evolve(enr, step_id=step.id, wake_at=now + step.wait_for_event.timeout,
                          waiting_for=step.wait_for_event.event), actions
        elif kind == "wait":
            wake = _wake_for(step, facts, now)
            if wake is not None and wake > now:
                return evolve(enr, step_id=step.id, wake_at=wake, waiting_for=None), actions
        current = steps.after[step.id]
    return None, actions + _removals(enr, facts.profile_id, cause)


COMPLETED_KEPT = 16


def _apply(state: JourneyState, journey_id: str, ran: str, result: Ran, now: datetime,
           actions: list[Planned], **changes: Any) -> JourneyState:
    """``ran``: the enrollment id whose steps ran; no enrollment back means it completed.
    ``changes``: more of the state's fields, changed in the same copy."""
    enrollment, new = result
    actions.extend(new)
    if enrollment is None:
        changes["completed"] = [*(c for c in state.completed if c != ran), ran][-COMPLETED_KEPT:]
    return state.with_active(journey_id, enrollment, now, **changes)


def _enroll(state: JourneyState, journey: Journey, facts: Facts, now: datetime, cause: str,
            actions: list[Planned], definitions: DefinitionSet) -> JourneyState:
    if not may_enroll(state, journey, now):
        return state
    count = state.enrollments.get(journey.id, 0) + 1
    fields: dict[str, Any] = dict(
        journey_id=journey.id, journey_version=journey.version,
        enrollment_id=f"{journey.id}#{count}", trigger=cause, entered_at=now,
        step_id=journey.steps[0].id, wake_at=None, waiting_for=None, added_audiences={},
        variants={})
    # All from the validated journey but "now", which validation checks when naive.
    enr = adopt(Enrollment, fields) if now.utcoffset() is not None else Enrollment(**fields)
    return _apply(state, journey.id, enr.enrollment_id,
                  _run(enr, journey, enr.step_id, facts, now, cause, definitions),
                  now, actions, enrollments={**state.enrollments, journey.id: count})


def _exit(state: JourneyState, journey_id: str, facts: Facts, now: datetime, cause: str,
          actions: list[Planned]) -> JourneyState:
    actions.extend(_removals(state.active[journey_id], facts.profile_id, cause))
    return state.with_active(journey_id, None, now)


def end_all(state: JourneyState, facts: Facts, now: datetime, cause: str) -> Result:
    """Every active enrollment ends, each with its paid-media clean-up: the profile was
    merged into another and no longer exists on its own."""
    actions: list[Planned] = []
    for jid in sorted(state.active):
        state = _exit(state, jid, facts, now, cause, actions)
    return state, actions


def on_event(state: JourneyState, facts: Facts, event: HistoryEvent, now: datetime,
             definitions: DefinitionSet) -> Result:
    """Exit criteria first, then waiting steps, then event-triggered enrollments."""
    actions: list[Planned] = []
    for jid, enr in sorted(state.active.items()):
        journey = definitions.journeys.get(jid)
        if journey is None or event.name in journey.exit_when.events:
            state = _exit(state, jid, facts, now, event.event_id, actions)
        elif enr.waiting_for == event.name and enr.step_id in plan(journey).steps:
            step = plan(journey).steps[enr.step_id]
            assert step.wait_for_event is not None  # noqa: S101 - waiting_for implies it
            result = _run(enr, journey, step.wait_for_event.on_event, facts, now, event.event_id,
                          definitions)
            state = _apply(state, jid, enr.enrollment_id, result, now, actions)
    for journey in triggers(definitions.journeys)[0].get(event.name, ()):
        state = _enroll(state, journey, facts, now, event.event_id, actions, definitions)
    return state, actions


def on_audience_change(state: JourneyState, facts: Facts, entered: Collection[str],
                       exited: Collection[str], now: datetime, definitions: DefinitionSet,
                       cause: str) -> Result:
    """Exits for left audiences first, then enrollments for entered ones."""
    actions: list[Planned] = []
    for jid in sorted(state.active):
        journey = definitions.journeys.get(jid)
        if journey is None or (journey.exit_when.audience_exit
                               and journey.trigger.audience in exited):
            state = _exit(state, jid, facts, now, cause, actions)
    for audience_id in sorted(entered):
        for journey in triggers(definitions.journeys)[1].get(audience_id, ()):
            state = _enroll(state, journey, facts, now, cause, actions, definitions)
    return state, actions


def on_timer(state: JourneyState, facts: Facts, now: datetime,
             definitions: DefinitionSet) -> Result:
    """Advance every enrollment whose wait ended or whose wait_for_event timed out."""
    actions: list[Planned] = []
    for jid, enr in sorted(state.active.items()):
        if enr.wake_at is None or enr.wake_at > now:
            continue
        cause = f"timer:{enr.wake_at.isoformat()}"  # from the stored wake: replay-stable
        journey = definitions.journeys.get(jid)
        if journey is None or enr.step_id not in plan(journey).steps:
            state = _exit(state, jid, facts, now, cause, actions)
            continue
        step = plan(journey).steps[enr.step_id]
        target = (step.wait_for_event.on_timeout if step.wait_for_event is not None
                  else plan(journey).after[step.id])
        state = _apply(state, jid, enr.enrollment_id,
                       _run(enr, journey, target, facts, now, cause, definitions), now,
                       actions)
    return state, actions
