"""The whole per-profile activation step: what the Faust agent calls, and nothing more.

Per profile the runtime stores one :class:`ActivationState` (JSON) and one timer
(``Output.wake_at``). On every profile change it calls :func:`on_profile_event`; when the
timer is due it calls :func:`on_profile_timer`. It then publishes ``Output.commands`` (to
the channel topics, keyed by profile id), appends ``Output.decisions`` to the profile
timeline, stores the new state and re-arms the timer. ``now`` is the event time or the
timer instant, so a replay yields the same ids.

Commands are only ever what is due now: a delayed action is held in the state
(:mod:`streams.activation.held`) and decided again when the timer reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streams.activation.actions import to_command
from streams.activation.audiences import AudienceStep, audience_step
from streams.activation.definitions import DefinitionSet
from streams.activation.facts import Facts, HistoryEvent
from streams.activation.governance import decide, record_send
from streams.activation.held import HeldAction, cancel_orphans, hold, next_release, release_due
from streams.activation.journeys import (
    JourneyState,
    end_all,
    forget_withheld_add,
    next_wake,
    on_audience_change,
    on_event,
    on_timer,
)
from streams.activation.model import (
    Assignment,
    DataAction,
    Decision,
    Planned,
    PlannedAction,
    SendRecord,
    evolve,
)


class ActivationState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile_id: str
    memberships: list[str] = Field(default_factory=list)
    journeys: JourneyState
    sends: list[SendRecord] = Field(default_factory=list)
    # Per audience, the next instant its answer can flip by time alone; and the
    # definitions version they were computed under (another version: evaluate all).
    audience_wakes: dict[str, AwareDatetime] = Field(default_factory=dict)
    evaluated_version: str | None = None
    notes_written: int = 0  # records noted so far: the next slot (activation/notes.py)
    held: list[HeldAction] = Field(default_factory=list)  # delayed, not yet due

    @classmethod
    def new(cls, profile_id: str) -> ActivationState:
        return cls(profile_id=profile_id, journeys=JourneyState(profile_id=profile_id))


@dataclass(frozen=True)
class Output:
    """What one step decided (a dataclass: built on every event, never stored, and
    its parts are validated where they are made)."""

    commands: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    wake_at: datetime | None = None
    data: list[DataAction] = field(default_factory=list)  # for the runtime to apply
    assignments: list[Assignment] = field(default_factory=list)  # experiment variants


Governed = tuple[ActivationState, list[Decision], list[dict[str, Any]]]


def _holdout(definitions: DefinitionSet, action: PlannedAction) -> float | None:
    journey = definitions.journeys.get(action.journey_id or "")
    return None if journey is None else journey.holdout_percent


def govern(state: ActivationState, actions: list[PlannedAction], facts: Facts, now: datetime,
           definitions: DefinitionSet) -> Governed:
    """Every planned action through :func:`decide`: commands for the allowed ones, the
    delayed ones held."""
    if not actions:  # most events plan none: the state as it is, not an equal copy
        return state, [], []
    sends, journeys, held = list(state.sends), state.journeys, list(state.held)
    decisions: list[Decision] = []
    commands: list[dict[str, Any]] = []
    for action in actions:
        decision = decide(action, facts, sends, definitions.governance, now, definitions.version,
                          _holdout(definitions, action))
        decisions.append(decision)
        sends = record_send(sends, decision, definitions.governance, now)
        if decision.outcome == "delayed":
            held.append(hold(decision, action))
        elif decision.outcome != "withheld":
            commands.append(to_command(action, decision, facts.identifiers))
        else:  # so exit does not "remove" a customer who was never added
            journeys = forget_withheld_add(journeys, action)
    return evolve(state, sends=sends, journeys=journeys, held=held), \
        decisions, commands


def settle_held(state: ActivationState, facts: Facts, now: datetime,
                definitions: DefinitionSet, everything: tuple[str, str] | None = None,
                exiting: frozenset[str] = frozenset()) -> Governed:
    """Held actions whose enrollment was exited are cancelled; the due ones decided again."""
    held, sends, cancelled, _ = cancel_orphans(state.held, state.sends, state.journeys, now,
                                               definitions.version, everything, exiting)
    held, sends, released, commands = release_due(
        held, sends, facts, now, definitions, lambda a: _holdout(definitions, a))
    state = evolve(state, held=held, sends=sends)
    return state, cancelled + released, commands


def exiting_journeys(definitions: DefinitionSet, event_name: str | None,
                     exited: list[str]) -> frozenset[str]:
    """Journeys whose exit criteria fire on this event or these audience exits."""
    return frozenset(jid for jid, j in definitions.journeys.items()
                     if event_name in j.exit_when.events
                     or (j.exit_when.audience_exit and j.trigger.audience in exited))


def _finish(state: ActivationState, planned: list[Planned], facts: Facts, now: datetime,
            definitions: DefinitionSet, moves: tuple[list[str], list[str]],
            everything: tuple[str, str] | None = None, event_name: str | None = None
            ) -> tuple[ActivationState, Output]:
    """Govern what the steps planned (data actions and assignments pass through: they
    contact nobody), settle held actions, and the profile's next wake."""
    actions = [p for p in planned if isinstance(p, PlannedAction)]
    state, decisions, commands = govern(state, actions, facts, now, definitions)
    if state.held:
        exiting = exiting_journeys(definitions, event_name, moves[1])
        state, settled, released = settle_held(state, facts, now, definitions, everything,
                                                exiting)
        decisions, commands = decisions + settled, commands + released
    wakes = [t for t in (min(state.audience_wakes.values(), default=None),
                         next_wake(state.journeys),
                         next_release(state.held) if state.held else None) if t is not None]
    return state, Output(commands=commands, decisions=decisions, entered=moves[0],
                         exited=moves[1], wake_at=min(wakes) if wakes else None,
                         data=[p for p in planned if isinstance(p, DataAction)],
                         assignments=[p for p in planned if isinstance(p, Assignment)])


def _audiences(state: ActivationState, facts: Facts, now: datetime, definitions: DefinitionSet,
               touched: frozenset[str] | None, fresh: bool = False
               ) -> tuple[dict[str, Any], AudienceStep]:
    """The audience step, and the state's fields it changes (for the caller's one copy
    of the state with the journeys' changes too)."""
    if state.evaluated_version != definitions.version and not fresh:
        touched = None
    step = audience_step(definitions.audiences, facts, state.memberships, state.audience_wakes,
                         now, touched, fresh)
    return {"memberships": step.members, "audience_wakes": step.wakes,
            "evaluated_version": definitions.version}, step


def on_profile_event(state: ActivationState, facts: Facts, event: HistoryEvent, now: datetime,
                     definitions: DefinitionSet, touched: frozenset[str] | None = None,
                     fresh: bool = False) -> tuple[ActivationState, Output]:
    """``facts`` already include ``event``. Exit criteria, then audiences, then governance.

    ``touched``: what the event changed (:func:`streams.activation.compiled.dependencies`
    names); only audiences reading it are evaluated again. None: all of them. ``fresh``:
    ``state`` is new and ``touched`` is what the event changed from an empty profile.
    """
    journeys, actions = on_event(state.journeys, facts, event, now, definitions)
    moved, step = _audiences(state, facts, now, definitions, touched, fresh)
    journeys, more = on_audience_change(journeys, facts, step.entered, step.exited, now,
                                        definitions, cause=event.event_id)
    state = evolve(state, journeys=journeys, **moved)
    return _finish(state, actions + more, facts, now, definitions, (step.entered, step.exited),
                   event_name=event.name)


def on_profile_timer(state: ActivationState, facts: Facts, now: datetime,
                     definitions: DefinitionSet) -> tuple[ActivationState, Output]:
    """The stored wake time was reached: time-based audience moves, then journey waits."""
    moved, step = _audiences(state, facts, now, definitions, frozenset())
    journeys, actions = on_audience_change(state.journeys, facts, step.entered, step.exited, now,
                                           definitions, cause=f"timer:{now.isoformat()}")
    journeys, more = on_timer(journeys, facts, now, definitions)
    state = evolve(state, journeys=journeys, **moved)
    return _finish(state, actions + more, facts, now, definitions, (step.entered, step.exited))


def on_profile_merged_away(state: ActivationState, facts: Facts, now: datetime,
                           definitions: DefinitionSet, cause: str
                           ) -> tuple[ActivationState, Output]:
    """The profile was merged into another (by event ``cause``): it leaves every audience
    and journey, with the journeys' clean-up (paid-media removals, which governance always
    allows), so nothing keeps acting on identifiers under a profile id that is gone. The
    surviving profile is evaluated on its own, with the merged facts."""
    journeys, actions = end_all(state.journeys, facts, now, cause)
    left = sorted(state.memberships)
    # No evaluated version: if the merge is undone, the restored profile's next event
    # evaluates every audience again instead of trusting memberships it no longer has.
    state = evolve(state, journeys=journeys, memberships=[], audience_wakes={},
                   evaluated_version=None)
    return _finish(state, actions, facts, now, definitions, ([], left),
                   everything=("merge", f"merged into another profile by {cause}"))


def on_profile_merged_in(state: ActivationState, facts: Facts, now: datetime,
                         definitions: DefinitionSet, cause: str
                         ) -> tuple[ActivationState, Output]:
    """Another profile's facts were merged into this one (by event ``cause``): every
    audience is evaluated again on the merged facts, and journeys react to the moves.
    No event is replayed: the linking event was applied (and acted on) already."""
    moved, step = _audiences(state, facts, now, definitions, None)
    journeys, actions = on_audience_change(state.journeys, facts, step.entered, step.exited,
                                           now, definitions, cause=cause)
    state = evolve(state, journeys=journeys, **moved)
    return _finish(state, actions, facts, now, definitions, (step.entered, step.exited))
