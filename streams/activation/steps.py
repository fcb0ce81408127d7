"""The step kinds beyond send, wait, branch and exit: experiments and data actions.

``split`` sends a deterministic, salted share of profiles down each branch (A/B/n)::

    - id: offer_test
      split:
        salt: winback-2026          # optional: a new salt reshuffles who gets what
        variants:
          - {name: ten_percent, weight: 50, next: offer_10}
          - {name: twenty_percent, weight: 50, next: offer_20}

A profile's variant is a hash of (salt, journey, step, profile): the same on every
worker, after every restart and on every re-entry, and independent of the holdout
group's hash (streams/activation/governance.py), which stays as it is.

``update_profile`` writes the profile (a data action): set or clear a trait, or add to
a number::

    - id: mark
      update_profile: {set: lifecycle_stage, value: at_risk}
    - id: unmark
      update_profile: {clear: lifecycle_stage}
    - id: score
      update_profile: {increment: risk_score, by: 5}

The write is applied in the profile stage like an event with its own id
(streams/activation/writes.py), so it is exactly-once, on the timeline, and every
audience sees it at once. Schedules take ``update_profile`` in place of ``action``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.activation.channels import Scalar

TRAIT_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # a top-level trait, read as traits.<name>
VARIANT_NAME = r"^[a-z0-9][a-z0-9_\-]{0,31}$"  # a metric label: short, few of them
MAX_VARIANTS = 10
_SCALE = 2**64
DataOp = Literal["set", "clear", "increment"]
# The timeline event each kind of write is (what event conditions and triggers see).
DATA_EVENTS: dict[str, str] = {"set": "trait_set", "clear": "trait_cleared",
                               "increment": "score_incremented"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Variant(_Strict):
    name: str = Field(pattern=VARIANT_NAME)
    weight: float = Field(gt=0)
    next: str


class SplitSpec(_Strict):
    salt: str = ""
    variants: list[Variant] = Field(min_length=2, max_length=MAX_VARIANTS)

    @model_validator(mode="after")
    def _unique(self) -> SplitSpec:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        return self


def bucket(salt: str, journey_id: str, step_id: str, profile_id: str) -> float:
    """A profile's place in [0, 1) for one split: sha256, not Python's hash, so it is
    the same in every process."""
    text = "\x1f".join((salt, journey_id, step_id, profile_id))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / _SCALE


def pick_variant(split: SplitSpec, journey_id: str, step_id: str, profile_id: str) -> Variant:
    """The variant of ``profile_id``: each variant gets its weight's share of profiles,
    by where the profile's bucket falls on the cumulative weights."""
    point = bucket(split.salt, journey_id, step_id, profile_id) \
        * sum(v.weight for v in split.variants)
    for variant in split.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    return split.variants[-1]  # rounding at the very top of the range


class UpdateProfile(_Strict):
    """Exactly one of ``set`` (with ``value``), ``clear`` or ``increment`` (with ``by``,
    default 1; a missing or non-numeric trait counts as 0)."""

    set: str | None = Field(default=None, pattern=TRAIT_NAME)
    clear: str | None = Field(default=None, pattern=TRAIT_NAME)
    increment: str | None = Field(default=None, pattern=TRAIT_NAME)
    value: Scalar = None
    by: int | float | None = None

    @model_validator(mode="after")
    def _one(self) -> UpdateProfile:
        ops = [op for op in ("set", "clear", "increment") if getattr(self, op) is not None]
        if len(ops) != 1:
            raise ValueError("give exactly one of set, clear, increment")
        if self.set is not None and self.value is None:
            raise ValueError("set needs a value (clear removes a trait)")
        if self.set is None and self.value is not None:
            raise ValueError("value goes with set only")
        if self.by is not None and (self.increment is None or isinstance(self.by, bool)):
            raise ValueError("by goes with increment only, as a number")
        return self

    @property
    def op(self) -> DataOp:
        return "set" if self.set is not None else "clear" if self.clear is not None \
            else "increment"

    @property
    def trait(self) -> str:
        name = self.set or self.clear or self.increment
        assert name is not None  # noqa: S101 - _one guarantees exactly one
        return name

    @property
    def written(self) -> frozenset[str]:
        return written(self.op, self.trait)


def written(op: str, trait: str) -> frozenset[str]:
    """What a write changes, as condition dependencies name it (compiled.py): the trait,
    and the event it puts on the timeline."""
    return frozenset({f"traits.{trait}", f"event:{DATA_EVENTS[op]}"})
