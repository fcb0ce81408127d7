"""The condition language of audiences and journey branches (models only).

A condition is a YAML mapping recognised by its key::

    {all: [c, ...]}  {any: [c, ...]}  {not: c}
    {trait: plan, op: eq, value: pro}            # op: eq ne gt gte lt lte in exists
    {event: purchase_completed, within: P90D, at_least: 2}
    {event: purchase_completed, within: P30D, sum_of: order_value, sum_at_least: 100}
    {event: login, within: P7D, did: false}      # did NOT do it
    {event: payment_failed, within: P7D, at_least: 2, since: payment_succeeded}
                                                 # counting only those after the newest
                                                 # payment_succeeded (dunning)
    {date: subscription.contract_end_date, within_next: P30D}
    {date: traits.trial_end_date, within_next: P3D}
    {date: aggregates.last_purchase_at, older_than: P90D, if_missing: true}
    {date: canceled_subscription.cancel_date, older_than: P30D}   # win-back

Paths are those of :meth:`streams.activation.facts.Facts.resolve`: ``subscription.x``
is the active subscription's, ``canceled_subscription.x`` the last canceled one's (a
customer who left has no active subscription to read a cancellation from).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    model_validator,
)

from streams.activation.facts import parse_duration


def _iso(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return f"{sign}P{days}D" + (f"T{clock}" if clock else "")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a duration must be an ISO 8601 string like P30D, got {value!r}")
    return parse_duration(value)


# Durations are written as ISO 8601 strings in YAML and canonical JSON alike.
Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(_iso, return_type=str)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TraitCondition(_Strict):
    trait: str = Field(min_length=1)
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"] = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> TraitCondition:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list value")
        if self.op in ("gt", "gte", "lt", "lte") and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        if self.op == "exists" and not isinstance(self.value, bool | None):
            raise ValueError("op 'exists' takes value true/false (default true)")
        return self


class EventCondition(_Strict):
    event: str = Field(min_length=1)
    within: Duration | None = None  # None: the whole (bounded) history
    at_least: int = Field(default=1, ge=1)
    sum_of: str | None = None
    sum_at_least: Decimal | None = None
    did: bool = True
    # Count only events after the newest event of this name (None: all in the window).
    since: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _sum_pair(self) -> EventCondition:
        if (self.sum_of is None) != (self.sum_at_least is None):
            raise ValueError("sum_of and sum_at_least go together")
        if self.since == self.event:
            raise ValueError("since names another event than the one counted")
        if self.within is not None and self.within <= timedelta(0):
            raise ValueError("within must be a positive duration")
        return self


class DateCondition(_Strict):
    """True while ``date - now`` lies in ``(lo, hi]`` (see :meth:`offsets`)."""

    date: str = Field(min_length=1)
    within_next: Duration | None = None
    within_last: Duration | None = None
    older_than: Duration | None = None
    if_missing: bool = False

    @model_validator(mode="after")
    def _one_window(self) -> DateCondition:
        given = [n for n in ("within_next", "within_last", "older_than") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of within_next, within_last, older_than")
        return self

    def offsets(self) -> tuple[timedelta | None, timedelta | None]:
        """(lo, hi) bounds on ``date - now``; None means unbounded on that side."""
        if self.within_next is not None:
            return timedelta(0), self.within_next
        if self.within_last is not None:
            return -self.within_last, timedelta(0)
        assert self.older_than is not None  # noqa: S101 - guaranteed by _one_window
        return None, -self.older_than


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")


_KINDS = ("all", "any", "not", "trait", "event", "date")


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [k for k in _KINDS if k in value]
        # Tags are <kind> so error paths can drop them (see definitions.format_path).
        return f"<{found[0]}>" if len(found) == 1 else None
    mapping: dict[type[Any], str] = {
        AllOf: "all", AnyOf: "any", NotOf: "not", TraitCondition: "trait",
        EventCondition: "event", DateCondition: "date"}
    kind = mapping.get(type(value))
    return None if kind is None else f"<{kind}>"


Condition = Annotated[
    Annotated[AllOf, Tag("<all>")] | Annotated[AnyOf, Tag("<any>")] | Annotated[NotOf, Tag("<not>")]
    | Annotated[TraitCondition, Tag("<trait>")] | Annotated[EventCondition, Tag("<event>")]
    | Annotated[DateCondition, Tag("<date>")],
    Discriminator(
        _kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition needs exactly one of the keys " + ", ".join(_KINDS),
    ),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()
