"""Action commands: the ``io.activation.actions.ActionCommand`` records channels consume.

``action_id`` is sha256 of (profile id, journey id, enrollment id, step id, trigger, action
type): the same cause always yields the same id, so a replayed journey step produces a
duplicate that consumers drop. The action type is part of it so a paid-media add and the
remove that later undoes it never share an id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streams.activation.channels import DEFAULT_PURPOSE
from streams.activation.definitions import SendSpec
from streams.activation.model import DataAction, Decision, PlannedAction, built, stable_id
from streams.activation.steps import UpdateProfile
from streams.errors import ActivationError

ACTION_COMMAND = "io.activation.actions.ActionCommand"
ID_KINDS = ("customer_id", "email_sha256", "phone_sha256", "anonymous_id")


class ActionCommandError(ActivationError):
    """A command was requested for an action governance did not allow."""


def action_id_for(profile_id: str, journey_id: str | None, enrollment_id: str | None,
                  step_id: str | None, trigger: str | None, action_type: str) -> str:
    return stable_id("action", profile_id, journey_id, enrollment_id, step_id, trigger,
                     action_type)


def plan_action(
    profile_id: str, send: SendSpec, *, journey_id: str | None = None,
    journey_version: int | None = None, enrollment_id: str | None = None,
    step_id: str | None = None, trigger: str | None = None, purpose: str | None = None,
    variants: Mapping[str, str] | None = None,
) -> PlannedAction:
    """``purpose``: the channel's, for a send that names none (DefinitionSet.purpose_of)."""
    return built(  # from a validated SendSpec and the enrollment's own ids
        PlannedAction,
        action_id=action_id_for(profile_id, journey_id, enrollment_id, step_id, trigger,
                                send.action_type),
        profile_id=profile_id, channel=send.channel, action_type=send.action_type,
        purpose=send.purpose or purpose or DEFAULT_PURPOSE, payload=dict(send.payload),
        journey_id=journey_id, journey_version=journey_version, step_id=step_id,
        enrollment_id=enrollment_id, caused_by=trigger, variants=dict(variants or {}),
    )


def plan_data(profile_id: str, spec: UpdateProfile, *, journey_id: str | None = None,
              enrollment_id: str | None = None, step_id: str | None = None,
              trigger: str | None = None, schedule_id: str | None = None) -> DataAction:
    """A data action; its id (also its timeline event's) follows the same cause the same
    way an action's does."""
    value = spec.value if spec.op == "set" else spec.by if spec.op == "increment" else None
    return DataAction(
        action_id=action_id_for(profile_id, journey_id or schedule_id, enrollment_id,
                                step_id, trigger, f"data:{spec.op}:{spec.trait}"),
        profile_id=profile_id, op=spec.op, trait=spec.trait,
        value=1 if spec.op == "increment" and value is None else value,
        journey_id=journey_id, step_id=step_id, enrollment_id=enrollment_id,
        caused_by=trigger, schedule_id=schedule_id)


def command_identifiers(identifiers: Mapping[str, Sequence[str]]) -> dict[str, str | None]:
    """One value per kind for the channel: the profile may know several (e.g. two emails);
    the smallest is taken so the choice is deterministic."""
    return {kind: (min(identifiers[kind]) if identifiers.get(kind) else None)
            for kind in ID_KINDS}


def to_command(action: PlannedAction, decision: Decision,
               identifiers: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The Avro dict for ``ActionCommand``; only for sent or delayed decisions."""
    if decision.outcome == "withheld" or decision.action_id != action.action_id:
        raise ActionCommandError(
            f"action {action.action_id}: decision {decision.decision_id} "
            f"({decision.outcome}) does not allow it")
    return {
        "action_id": action.action_id,
        "channel": action.channel,
        "action_type": action.action_type,
        "profile_id": action.profile_id,
        "identifiers": command_identifiers(identifiers),
        "payload": dict(action.payload),
        "journey_id": action.journey_id,
        "journey_version": action.journey_version,
        "step_id": action.step_id,
        "decision_id": decision.decision_id,
        "caused_by_event_id": action.caused_by,
        "created_at": decision.decided_at,
        "not_before": decision.not_before,
        "definitions_version": decision.definitions_version,
        "variants": dict(action.variants),
    }
