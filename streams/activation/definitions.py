"""Audience, journey and governance definitions: YAML files validated into one versioned set.

Layout of a definitions directory::

    audiences/<id>.yaml   {id?, description?, condition}         (see conditions.py)
    journeys/<id>.yaml    {id?, version, trigger, steps, exit_when?, reentry?, holdout_percent?}
    governance.yaml       consent-independent rules: suppression, caps, quiet hours, holdout
    destinations/<id>.yaml  where the delivery executor calls (streams/delivery/destinations.py)
    schedules/<id>.yaml   {id?, cron, timezone, audience | condition, action, catch_up?}
                          scheduled (batch) actions (streams/activation/schedules.py)

``id`` defaults to the file name. Every error names the file, the path inside it and what
is wrong (``journeys/churn.yaml: steps[2].wait.duration: ...``). The set's ``version`` is a
short hash of its canonical JSON, so every worker can tell which definitions are in force.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.activation.conditions import Condition, Duration
from streams.delivery.destinations import Destination
from streams.errors import ActivationError

Scalar = None | bool | int | float | str
Channel = Literal["email", "paid_media", "webhook", "crm"]
ACTION_TYPES: dict[str, frozenset[str]] = {
    "email": frozenset({"send_email"}),
    "paid_media": frozenset({"audience_add", "audience_remove"}),
    "webhook": frozenset({"call_webhook"}),
    "crm": frozenset({"update_crm"}),
}
STEP_KINDS = ("send", "wait", "wait_for_event", "branch", "exit")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class DefinitionError(ActivationError):
    """A definition file is invalid; the message names the file, the path and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Audience(_Strict):
    id: str = Field(min_length=1)
    description: str = ""
    condition: Condition


class SendSpec(_Strict):
    channel: Channel
    action_type: str
    purpose: str = Field(default="marketing", min_length=1)
    payload: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_channel(self) -> SendSpec:
        allowed = ACTION_TYPES[self.channel]
        if self.action_type not in allowed:
            raise ValueError(f"action_type {self.action_type!r} is not one of "
                             f"{sorted(allowed)} for channel {self.channel}")
        if self.channel == "paid_media" and not self.payload.get("audience_id"):
            raise ValueError("paid_media actions need payload.audience_id")
        return self


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


class QuietHours(_Strict):
    start: str  # "HH:MM" local time; quoted in YAML (21:00 unquoted is a YAML 1.1 number)
    end: str
    channels: list[Channel] = Field(default_factory=lambda: list[Channel](["email"]))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> str:
        if not isinstance(value, str) or not _HHMM.match(value):
            raise ValueError(f"expected a quoted 24h time like \"21:00\", got {value!r}")
        return value

    def bounds(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class FrequencyCap(_Strict):
    channel: Channel
    max_sends: int = Field(ge=1)
    per: Duration


class Suppression(_Strict):
    profile_ids: list[str] = Field(default_factory=list)
    identifier_hashes: list[str] = Field(default_factory=list)


class GovernanceRules(_Strict):
    default_timezone: str = "UTC"
    suppression: Suppression = Field(default_factory=Suppression)
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: QuietHours | None = None
    holdout_percent: float = Field(default=0, ge=0, le=100)
    holdout_salt: str = ""

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


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
    action: SendSpec
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
        return self


class DefinitionSet(_Strict):
    version: str
    audiences: dict[str, Audience]
    journeys: dict[str, Journey]
    governance: GovernanceRules
    destinations: dict[str, Destination] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)

    def journeys_for_audience(self, audience_id: str) -> list[Journey]:
        return [j for _, j in sorted(self.journeys.items()) if j.trigger.audience == audience_id]

    def journeys_for_event(self, event_name: str) -> list[Journey]:
        return [j for _, j in sorted(self.journeys.items()) if j.trigger.event == event_name]


M = TypeVar("M", bound=BaseModel)
D = TypeVar("D", Audience, Journey, Destination, Schedule)


def format_path(loc: Sequence[int | str]) -> str:
    """``('steps', 2, 'wait', 'duration')`` -> ``steps[2].wait.duration``; union tags dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part.startswith("<") and part.endswith(">")):  # conditions' <kind> tags
            out += f".{part}" if out else part
    return out or "(top level)"


def _read_yaml(path: Path, rel: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{rel}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(f"{rel}: (top level): expected a mapping, got {type(data).__name__}")
    return data


def _validate(model: type[M], data: dict[str, Any], rel: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{format_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())
        raise DefinitionError(f"{rel}: {problems}") from exc


def _load_dir(
    root: Path, sub: str, model: type[D]
) -> tuple[dict[str, D], dict[str, str]]:
    """Models by id, and the file each came from (for cross-reference errors)."""
    items: dict[str, D] = {}
    files: dict[str, str] = {}
    for path in sorted((root / sub).glob("*.y*ml")):
        rel = f"{sub}/{path.name}"
        data = _read_yaml(path, rel)
        data.setdefault("id", path.stem)
        item = _validate(model, data, rel)
        if item.id in items:
            raise DefinitionError(f"{rel}: id: {item.id!r} is also defined in {files[item.id]}")
        items[item.id], files[item.id] = item, rel
    return items, files


def _step_refs(journey: Journey) -> Iterator[tuple[str, str]]:
    """(path, referenced step id) for every step reference in a journey."""
    for i, step in enumerate(journey.steps):
        if step.next is not None:
            yield f"steps[{i}].next", step.next
        if step.wait_for_event is not None:
            yield f"steps[{i}].wait_for_event.on_event", step.wait_for_event.on_event
            yield f"steps[{i}].wait_for_event.on_timeout", step.wait_for_event.on_timeout
        if step.branch is not None:
            for c, case in enumerate(step.branch.cases):
                yield f"steps[{i}].branch.cases[{c}].next", case.next
            yield f"steps[{i}].branch.otherwise", step.branch.otherwise


def _check_references(
    audiences: dict[str, Audience], journeys: dict[str, Journey], files: dict[str, str]
) -> None:
    for jid, journey in sorted(journeys.items()):
        rel = files[jid]
        if journey.trigger.audience is not None and journey.trigger.audience not in audiences:
            raise DefinitionError(f"{rel}: trigger.audience: unknown audience "
                                  f"{journey.trigger.audience!r} (known: {sorted(audiences)})")
        ids = {s.id for s in journey.steps}
        for path, ref in _step_refs(journey):
            if ref not in ids:
                raise DefinitionError(f"{rel}: {path}: unknown step id {ref!r} "
                                      f"(steps: {sorted(ids)})")


def _check_schedules(audiences: dict[str, Audience], schedules: dict[str, Schedule],
                     files: dict[str, str]) -> None:
    for sid, schedule in sorted(schedules.items()):
        if schedule.audience is not None and schedule.audience not in audiences:
            raise DefinitionError(f"{files[sid]}: audience: unknown audience "
                                  f"{schedule.audience!r} (known: {sorted(audiences)})")


def canonical_json(audiences: dict[str, Audience], journeys: dict[str, Journey],
                   governance: GovernanceRules,
                   destinations: dict[str, Destination] | None = None,
                   schedules: dict[str, Schedule] | None = None) -> bytes:
    def dump(model: BaseModel) -> Any:
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    doc = {"audiences": {k: dump(v) for k, v in sorted(audiences.items())},
           "journeys": {k: dump(v) for k, v in sorted(journeys.items())},
           "governance": dump(governance)}
    if destinations:  # absent when none: sets published before destinations keep their hash
        doc["destinations"] = {k: dump(v) for k, v in sorted(destinations.items())}
    if schedules:  # likewise: sets without schedules keep the hash they had
        doc["schedules"] = {k: dump(v) for k, v in sorted(schedules.items())}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _canonical(definitions: DefinitionSet) -> bytes:
    return canonical_json(definitions.audiences, definitions.journeys, definitions.governance,
                          definitions.destinations, definitions.schedules)


def load_definitions(directory: Path) -> DefinitionSet:
    """Every definition under ``directory``, validated and cross-checked, with its version."""
    if not directory.is_dir():
        raise DefinitionError(f"{directory}: not a directory")
    audiences, _ = _load_dir(directory, "audiences", Audience)
    journeys, files = _load_dir(directory, "journeys", Journey)
    destinations, _ = _load_dir(directory, "destinations", Destination)
    schedules, schedule_files = _load_dir(directory, "schedules", Schedule)
    gov_path = directory / "governance.yaml"
    governance = (_validate(GovernanceRules, _read_yaml(gov_path, "governance.yaml"),
                            "governance.yaml") if gov_path.exists() else GovernanceRules())
    _check_references(audiences, journeys, files)
    _check_schedules(audiences, schedules, schedule_files)
    unversioned = DefinitionSet(version="", audiences=audiences, journeys=journeys,
                                governance=governance, destinations=destinations,
                                schedules=schedules)
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
        schedules={k: Schedule.model_validate(v) for k, v in doc.get("schedules", {}).items()})
    digest = hashlib.sha256(_canonical(unversioned)).hexdigest()[:12]
    if digest != doc.get("version"):
        raise DefinitionError(f"snapshot: version: says {doc.get('version')!r}, "
                              f"content hashes to {digest!r}")
    return unversioned.model_copy(update={"version": digest})
