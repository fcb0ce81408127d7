"""Records shared by journeys, governance and action commands (JSON-serialisable)."""

from __future__ import annotations

from datetime import datetime
from hashlib import sha256
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streams.activation.definitions import Scalar
from streams.activation.steps import DataOp

Outcome = Literal["sent", "withheld", "delayed", "cancelled"]
SEP = _SEP = "\x1f"  # unit separator: no field value can fake a boundary with it


def stable_id(*parts: str | int | None) -> str:
    """sha256 hex of the parts; the same parts always give the same id."""
    text = _SEP.join(["" if p is None else p if p.__class__ is str else str(p)
                      for p in parts])
    return sha256(text.encode()).hexdigest()


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_ORDER: dict[type[BaseModel], tuple[str, ...]] = {}  # a model's field names, in order


def built(cls: type[M], **fields: Any) -> M:
    """``cls(**fields)`` without validation, for records made on the hot path from
    values validated already (definitions, other records): every field given, kept in
    declaration order (the order pydantic dumps them in). A PlannedAction's validation
    was most of the cost of planning one."""
    return adopt(cls, fields)


def adopt(cls: type[M], fields: dict[str, Any]) -> M:
    """:func:`built` of a dict the caller made for it and hands over: given in the
    fields' order (as the hot path's callers give them), it becomes the instance's own
    ``__dict__``, without the copy in order (any other order is copied in order)."""
    new = cls.__new__(cls)
    names = _ORDER.get(cls)
    if names is None:  # __pydantic_fields__: the class's plain dict (not a descriptor)
        names = _ORDER[cls] = tuple(cls.__pydantic_fields__)
    _set(new, "__dict__", fields if tuple(fields) == names
         else {name: fields[name] for name in names})
    _set(new, "__pydantic_fields_set__", set(fields))
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_private__", None)
    return new


def evolve(model: M, **changes: Any) -> M:
    """``model.model_copy(update=changes)`` for activation's frozen records (no extra
    fields, no private attributes), at a third of its cost: the state is copied with a
    change several times per event. Like model_copy, the changes are not validated."""
    new = model.__class__.__new__(model.__class__)
    _set(new, "__dict__", {**model.__dict__, **changes})
    fields_set = model.__pydantic_fields_set__  # shared when unchanged: never mutated
    if not changes.keys() <= fields_set:
        fields_set = fields_set | changes.keys()
    _set(new, "__pydantic_fields_set__", fields_set)
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_private__", None)
    return new


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlannedAction(_Record):
    """What a journey wants done, before governance decides whether, and when."""

    action_id: str
    profile_id: str
    channel: str
    action_type: str
    purpose: str
    payload: dict[str, Scalar] = Field(default_factory=dict)
    journey_id: str | None = None
    journey_version: int | None = None
    step_id: str | None = None
    enrollment_id: str | None = None
    caused_by: str | None = None  # the event id or trigger id that led to the step
    # "<journey id>/<split step id>" -> variant, for the experiments the enrollment passed
    variants: dict[str, str] = Field(default_factory=dict)


class DataAction(_Record):
    """A write to the profile a journey or schedule step asks for (a data action,
    streams/activation/writes.py); ``action_id`` is also the id of its timeline event."""

    action_id: str
    profile_id: str
    op: DataOp
    trait: str
    value: Scalar = None  # set: the value; increment: the amount
    journey_id: str | None = None
    step_id: str | None = None
    enrollment_id: str | None = None
    caused_by: str | None = None
    schedule_id: str | None = None


class Assignment(_Record):
    """A profile sent down one variant of a split step (an experiment)."""

    assignment_id: str
    profile_id: str
    journey_id: str
    step_id: str
    variant: str
    enrollment_id: str
    caused_by: str


# What a journey's steps plan: actions for governance, writes, experiment assignments.
Planned = PlannedAction | DataAction | Assignment


class Decision(_Record):
    """The governance outcome of one action, for the profile timeline (sent, withheld,
    delayed: held until ``not_before``; cancelled: held, then stopped by ``rule``)."""

    decision_id: str
    outcome: Outcome
    # consent | suppression | frequency_cap | quiet_hours | holdout | removal | allowed
    # | released (a held action let go) | journey_exit (a held action's enrollment ended)
    rule: str
    reason: str
    action_id: str
    profile_id: str
    channel: str
    action_type: str
    purpose: str
    journey_id: str | None
    step_id: str | None
    definitions_version: str
    decided_at: AwareDatetime
    not_before: AwareDatetime | None = None
    variants: dict[str, str] = Field(default_factory=dict)  # the action's experiments

    def to_timeline(self, at: datetime | None = None, stamp: str | None = None
                    ) -> dict[str, Any]:
        """``model_dump(mode="json")``, built directly: one per decision, on the hot path.
        ``stamp``: ``json_time(at)``, for the decisions of one record, decided at its
        "now"."""
        out = dict(self.__dict__)  # the fields, in their order
        decided = stamp if stamp is not None and self.decided_at is at \
            else json_time(self.decided_at)
        later = self.not_before
        if decided is None or (later is not None and json_time(later) is None):
            return self.model_dump(mode="json")
        out["decided_at"] = decided
        out["not_before"] = None if later is None else json_time(later)
        out["variants"] = dict(self.variants)
        return out


class SendRecord(_Record):
    """One action counted by frequency caps (per-profile send history)."""

    action_id: str
    channel: str
    at: AwareDatetime


def json_time(value: datetime) -> str | None:
    """An aware instant as pydantic writes it in JSON (``Z`` for UTC); None for an
    offset with seconds, which pydantic writes otherwise (let it)."""
    offset = value.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: activation needs aware times")
    return value
