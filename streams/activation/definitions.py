"""Audience, journey and governance definitions: YAML files validated into one versioned set.

Layout of a definitions directory::

    audiences/<id>.yaml   {id?, description?, condition}         (see conditions.py)
    journeys/<id>.yaml    {id?, version, trigger, steps, exit_when?, reentry?, holdout_percent?}
    governance.yaml       consent-independent rules: suppression, caps, quiet hours, holdout
    destinations/<id>.yaml  where the delivery executor calls (streams/delivery/destinations.py)
    schedules/<id>.yaml   {id?, cron, timezone, audience | condition,
                           action | update_profile, catch_up?}
                          scheduled (batch) actions (streams/activation/schedules.py)
    channels/<id>.yaml    a channel: its topic, action types, consent purpose, caps and
                          quiet hours (streams/activation/channels.py; none: the built-in
                          email, paid_media, webhook, crm)

``id`` defaults to the file name. Every error names the file, the path inside it and what
is wrong (``journeys/churn.yaml: steps[2].wait.duration: ...``); checks across files
are in streams/activation/checks.py. The set's ``version`` is a short hash of its
canonical JSON, so every worker can tell which definitions are in force: a field added
here defaults to None (left out of that JSON), so published snapshots keep their hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streams.activation.channels import CHANNEL_ID, ChannelDef, in_force, load_channels
from streams.activation.channels import Scalar as Scalar
from streams.activation.checks import channel_use, loops, references
from streams.activation.conditions import Condition, Duration
from streams.activation.files import DefinitionError as DefinitionError
from streams.activation.files import format_path as format_path
from streams.activation.files import load_dir, read_yaml, validate_model
from streams.activation.governance_rules import GovernanceRules
from streams.activation.steps import SplitSpec, UpdateProfile
from streams.delivery.destinations import Destination

STEP_KINDS = ("send", "wait", "wait_for_event", "branch", "split", "update_profile", "exit")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Audience(_Strict):
    id: str = Field(min_length=1)
    description: str = ""
    condition: Condition


class SendSpec(_Strict):
    """An action on a channel; whether the channel takes it is checked against the set's
    channels (streams/activation/checks.py). ``purpose``: the channel's unless given."""

    channel: str = Field(pattern=CHANNEL_ID)
    action_type: str = Field(min_length=1)
    purpose: str | None = Field(default=None, min_length=1)
    payload: dict[str, Scalar] = Field(default_factory=dict)


class DateRef(_Strict):
    date: str = Field(min_length=1)
    offset: Duration = timedelta(0)


class WaitSpec(_Strict):
    """Wait a duration, or until a date of the profile plus an offset (past: go on at once)."""

    duration: Duration | None = None
    until: DateRef | None = None

    @model_validator(mode="after")
    def _one(self) -> WaitSpec:
        if (self.duration is None) == (self.until is None):
            raise ValueError("give exactly one of duration, until")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        return self


class WaitForEventSpec(_Strict):
    event: str = Field(min_length=1)
    timeout: Duration
    on_event: str
    on_timeout: str

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be positive")
        return value


class BranchCase(_Strict):
    when: Condition
    next: str


class BranchSpec(_Strict):
    cases: list[BranchCase] = Field(min_length=1)
    otherwise: str


class ExitSpec(_Strict):
    reason: str = "completed"


class Step(_Strict):
    """One step; exactly one of the kind keys. ``next`` defaults to the following step."""

    id: str = Field(min_length=1)
    next: str | None = None
    send: SendSpec | None = None
    wait: WaitSpec | None = None
    wait_for_event: WaitForEventSpec | None = None
    branch: BranchSpec | None = None
    split: SplitSpec | None = None  # streams/activation/steps.py
    update_profile: UpdateProfile | None = None
    exit: ExitSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step needs exactly one of {', '.join(STEP_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


class Trigger(_Strict):
    audience: str | None = None
    event: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        if (self.audience is None) == (self.event is None):
            raise ValueError("give exactly one of audience, event")
        return self


class ExitCriteria(_Strict):
    events: list[str] = Field(default_factory=list)  # checked on every event
    audience_exit: bool = True  # leave the journey when leaving its trigger audience


class ReentryAfter(_Strict):
    after: Duration


Reentry = Literal["never", "after_exit"] | ReentryAfter


class Journey(_Strict):
    id: str = Field(min_length=1)
    version: int = Field(default=1, ge=1)
    description: str = ""
    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
    exit_when: ExitCriteria = Field(default_factory=ExitCriteria)
    # never: once per customer, ever; after_exit: again once the last enrollment ended;
    # {after: P30D}: again 30 days after the last enrollment ended.
    reentry: Reentry = "never"
    holdout_percent: float | None = Field(default=None, ge=0, le=100)

    @field_validator("steps")
    @classmethod
    def _unique_ids(cls, steps: list[Step]) -> list[Step]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return steps

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def after(self, step: Step) -> str | None:
        """The step that follows ``step`` when it names none: the next in the list."""
        if step.next is not None:
            return step.next
        index = self.steps.index(step)
        return self.steps[index + 1].id if index + 1 < len(self.steps) else None


class Schedule(_Strict):
    """A scheduled (batch) action: at every ``cron`` instant in ``timezone``, ``action``
    for each profile in ``audience`` (or matching ``condition``), through governance.
    ``catch_up``: a tick missed while no worker ran runs ``once`` (the latest missed one)
    or is ``skip``ped. Run by streams/activation/schedules.py."""

    id: str = Field(min_length=1)
    description: str = ""
    cron: str = Field(min_length=1)  # five fields: minute hour day-of-month month day-of-week
    timezone: str
    audience: str | None = None
    condition: Condition | None = None
    action: SendSpec | None = None
    update_profile: UpdateProfile | None = None  # a data action instead of a send
    catch_up: Literal["once", "skip"] = "once"
    holdout_percent: float | None = Field(default=None, ge=0, le=100)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Five fields only: cronsim's Debian-cron handling of DST gaps and repeats applies
        # to those, and a seconds field means nothing to ticks a second apart.
        if len(value.split()) != 5:
            raise ValueError(f"expected five cron fields (minute hour day month weekday), "
                             f"got {value!r}")
        try:
            CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return GovernanceRules._zone(value)

    @model_validator(mode="after")
    def _one_target(self) -> Schedule:
        if (self.audience is None) == (self.condition is None):
            raise ValueError("give exactly one of audience, condition")
        if (self.action is None) == (self.update_profile is None):
            raise ValueError("give exactly one of action, update_profile")
        return self


class DefinitionSet(_Strict):
    version: str
    audiences: dict[str, Audience]
    journeys: dict[str, Journey]
    governance: GovernanceRules
    destinations: dict[str, Destination] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    channels: dict[str, ChannelDef] = Field(default_factory=dict)  # declared; see all_channels

    @model_validator(mode="after")
    def _governed_channels(self) -> DefinitionSet:
        # Governance decides per channel with the channel's own caps and quiet hours.
        object.__setattr__(self, "governance", self.governance.with_channels(self.channels))
        return self

    @property
    def all_channels(self) -> Mapping[str, ChannelDef]:
        """The channels in force: those declared, or the built-in four if none are."""
        return in_force(self.channels)

    def purpose_of(self, send: SendSpec) -> str | None:
        """The consent purpose of a send: its own, else its channel's."""
        channel = self.all_channels.get(send.channel)
        return send.purpose or (None if channel is None else channel.purpose)

    def journeys_for_audience(self, audience_id: str) -> list[Journey]:
        return [j for _, j in sorted(self.journeys.items()) if j.trigger.audience == audience_id]

    def journeys_for_event(self, event_name: str) -> list[Journey]:
        return [j for _, j in sorted(self.journeys.items()) if j.trigger.event == event_name]


D = TypeVar("D", Audience, Journey, Destination, Schedule)


def canonical_json(audiences: dict[str, Audience], journeys: dict[str, Journey],
                   governance: GovernanceRules,
                   destinations: dict[str, Destination] | None = None,
                   schedules: dict[str, Schedule] | None = None,
                   channels: dict[str, ChannelDef] | None = None) -> bytes:
    def dump(model: BaseModel) -> Any:
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    doc = {"audiences": {k: dump(v) for k, v in sorted(audiences.items())},
           "journeys": {k: dump(v) for k, v in sorted(journeys.items())},
           "governance": dump(governance)}
    if destinations:  # absent when none: sets published before destinations keep their hash
        doc["destinations"] = {k: dump(v) for k, v in sorted(destinations.items())}
    if schedules:  # likewise: sets without schedules keep the hash they had
        doc["schedules"] = {k: dump(v) for k, v in sorted(schedules.items())}
    if channels:  # likewise: sets without channel files have the built-in ones
        doc["channels"] = {k: dump(v) for k, v in sorted(channels.items())}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _canonical(definitions: DefinitionSet) -> bytes:
    return canonical_json(definitions.audiences, definitions.journeys, definitions.governance,
                          definitions.destinations, definitions.schedules,
                          definitions.channels)


def load_definitions(directory: Path) -> DefinitionSet:
    """Every definition under ``directory``, validated and cross-checked, with its version."""
    if not directory.is_dir():
        raise DefinitionError(f"{directory}: not a directory")
    files: dict[tuple[str, str], str] = {}

    def load(sub: str, model: type[D]) -> dict[str, D]:
        items, paths = load_dir(directory, sub, model)
        files.update({(sub, k): rel for k, rel in paths.items()})
        return items

    channels, channel_files = load_channels(directory)
    files.update({("channels", k): rel for k, rel in channel_files.items()})
    gov_path = directory / "governance.yaml"
    governance = (validate_model(GovernanceRules, read_yaml(gov_path, "governance.yaml"),
                                 "governance.yaml") if gov_path.exists() else GovernanceRules())
    unversioned = DefinitionSet(
        version="", audiences=load("audiences", Audience), journeys=load("journeys", Journey),
        governance=governance, destinations=load("destinations", Destination),
        schedules=load("schedules", Schedule), channels=channels)
    for check in (references, channel_use, loops):
        problem = next(check(unversioned, files), None)
        if problem is not None:
            raise DefinitionError(problem)
    digest = hashlib.sha256(_canonical(unversioned)).hexdigest()
    return unversioned.model_copy(update={"version": digest[:12]})


def snapshot(definitions: DefinitionSet) -> bytes:
    """The bytes to publish (compacted topic, key ``definitions``) so workers share one set."""
    doc = json.loads(_canonical(definitions))
    return json.dumps({"version": definitions.version, **doc}, sort_keys=True,
                      separators=(",", ":")).encode()


def from_snapshot(raw: bytes) -> DefinitionSet:
    """A published snapshot back as a set; the version is recomputed and must match."""
    doc = json.loads(raw)
    unversioned = DefinitionSet(
        version="",
        audiences={k: Audience.model_validate(v) for k, v in doc["audiences"].items()},
        journeys={k: Journey.model_validate(v) for k, v in doc["journeys"].items()},
        governance=GovernanceRules.model_validate(doc["governance"]),
        destinations={k: Destination.model_validate(v)
                      for k, v in doc.get("destinations", {}).items()},
        schedules={k: Schedule.model_validate(v) for k, v in doc.get("schedules", {}).items()},
        channels={k: ChannelDef.model_validate(v) for k, v in doc.get("channels", {}).items()})
    digest = hashlib.sha256(_canonical(unversioned)).hexdigest()[:12]
    if digest != doc.get("version"):
        raise DefinitionError(f"snapshot: version: says {doc.get('version')!r}, "
                              f"content hashes to {digest!r}")
    return unversioned.model_copy(update={"version": digest})
