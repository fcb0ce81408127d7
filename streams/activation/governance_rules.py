"""The governance rules of a definition set (``governance.yaml``): suppression, frequency
caps, quiet hours and holdout, applied by streams/activation/governance.py. The set
itself is in streams/activation/definitions.py."""

from __future__ import annotations

from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from streams.activation.channels import ChannelDef, Window, in_force
from streams.activation.conditions import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class QuietHours(Window):
    """The quiet-hours window, and the channels it holds back (a channel's own file may
    also opt in, or give its own window: streams/activation/channels.py)."""

    channels: list[str] = Field(default_factory=lambda: ["email"])


class FrequencyCap(_Strict):
    channel: str
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
    # The set's channels, attached by DefinitionSet (their caps and quiet hours join these
    # rules in governance.py); not part of governance.yaml, nor of its hash.
    _channels: Mapping[str, ChannelDef] = PrivateAttr(default_factory=dict)

    def channel(self, name: str) -> ChannelDef | None:
        # Read from pydantic's private dict: ``self._channels`` goes through its
        # ``__getattr__``, and governance asks several times per action.
        private = self.__pydantic_private__ or {}
        return in_force(private.get("_channels") or {}).get(name)

    def with_channels(self, channels: Mapping[str, ChannelDef]) -> GovernanceRules:
        rules = self.model_copy()
        rules._channels = dict(channels)
        return rules

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value
