"""Channels as configuration: which actions a channel takes, where its commands go, and
the rules it adds to governance (``definitions/channels/<id>.yaml``)::

    description: Text messages through the SMS provider.
    topic: actions.sms            # where its commands go (default actions.<id>)
    purpose: service              # consent purpose of its sends: service:sms must be GRANTED
    action_types:
      send_sms: {requires: [template_id]}   # payload fields every such command carries
    frequency_caps:               # per channel, on top of governance.yaml's for it
      - {max_sends: 2, per: P7D}
    quiet_hours: {start: "20:00", end: "09:00"}   # its own window in the customer's zone;
                                  # true: governance.yaml's; false (default): none, unless
                                  # governance.yaml's quiet_hours.channels names it

An action type that only takes data away says so (``removal: true``, or
``removal_when: {operation: [remove, delete]}``: when the payload field has one of those
values): governance never blocks it and caps do not count it.

Adding a file is all a new channel needs: ``scripts/definitions publish`` creates its
topic and registers its subject (streams/activation/provision.py), the worker sends its
commands there, and ``python -m streams.bootstrap`` declares it too.

A set with no channel files has :data:`BUILTIN_CHANNELS`: email, paid_media, webhook
and crm as they were before channels were configuration, so older definitions (and the
snapshots already published, whose versions are hashes of their content) keep meaning
what they meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streams.activation.conditions import Duration
from streams.activation.files import DefinitionError, load_dir

Scalar = None | bool | int | float | str
CHANNEL_ID = r"^[a-z][a-z0-9_]{0,31}$"  # a metric label and part of a topic name
TOPIC_PREFIX = "actions."  # keeps channel topics apart from the platform's own
_TOPIC = re.compile(r"^actions\.[A-Za-z0-9._-]{1,200}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DEFAULT_PURPOSE = "marketing"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(_Strict):
    """A daily window in the customer's local time; it may span midnight."""

    start: str  # "HH:MM"; quoted in YAML (21:00 unquoted is a YAML 1.1 number)
    end: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> str:
        if not isinstance(value, str) or not _HHMM.match(value):
            raise ValueError(f"expected a quoted 24h time like \"21:00\", got {value!r}")
        return value

    def bounds(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class ChannelCap(_Strict):
    max_sends: int = Field(ge=1)
    per: Duration


class ActionTypeSpec(_Strict):
    requires: list[str] = Field(default_factory=list)
    removal: bool = False
    removal_when: dict[str, list[Scalar]] | None = None

    def is_removal(self, payload: Mapping[str, Any]) -> bool:
        if self.removal:
            return True
        if not self.removal_when:  # most types: asked for every action decided
            return False
        return any(payload.get(name) in values
                   for name, values in (self.removal_when or {}).items())


class ChannelDef(_Strict):
    id: str = Field(pattern=CHANNEL_ID)
    description: str = ""
    topic: str | None = None
    purpose: str = Field(default=DEFAULT_PURPOSE, min_length=1)
    action_types: dict[str, ActionTypeSpec] = Field(min_length=1)
    frequency_caps: list[ChannelCap] = Field(default_factory=list)
    quiet_hours: bool | Window = False

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC.match(value):
            raise ValueError(f"a channel's topic is {TOPIC_PREFIX}<name> (letters, digits, "
                             f"'.', '_', '-'), got {value!r}")
        return value

    @model_validator(mode="after")
    def _removal_fields(self) -> ChannelDef:
        for name, spec in self.action_types.items():
            if spec.removal and spec.removal_when:
                raise ValueError(f"action_types.{name}: give removal or removal_when, not both")
        return self

    @property
    def topic_name(self) -> str:
        """The logical topic of its commands (the deployment's prefix comes on top)."""
        return self.topic or f"{TOPIC_PREFIX}{self.id}"

    def problem(self, action_type: str, payload: Mapping[str, Any]) -> str | None:
        """Why a command of ``action_type`` with ``payload`` does not fit, or None."""
        spec = self.action_types.get(action_type)
        if spec is None:
            return (f"action_type {action_type!r} is not one of {sorted(self.action_types)} "
                    f"for channel {self.id}")
        missing = [f for f in spec.requires if payload.get(f) in (None, "")]
        if missing:
            return (f"{self.id} {action_type} actions need payload."
                    f"{', payload.'.join(missing)}")
        return None

    def is_removal(self, action_type: str, payload: Mapping[str, Any]) -> bool:
        spec = self.action_types.get(action_type)
        return spec is not None and spec.is_removal(payload)


def _builtin(cid: str, **types: ActionTypeSpec) -> ChannelDef:
    return ChannelDef(id=cid, action_types=types)


# What the four original channels were in code; definitions/channels/ declares them too.
BUILTIN_CHANNELS: dict[str, ChannelDef] = {
    "email": _builtin("email", send_email=ActionTypeSpec()),
    "paid_media": _builtin("paid_media",
                           audience_add=ActionTypeSpec(requires=["audience_id"]),
                           audience_remove=ActionTypeSpec(requires=["audience_id"],
                                                          removal=True)),
    "webhook": _builtin("webhook", call_webhook=ActionTypeSpec()),
    "crm": _builtin("crm", update_crm=ActionTypeSpec(
        removal_when={"operation": ["remove", "delete"]})),
}


def in_force(declared: Mapping[str, ChannelDef]) -> Mapping[str, ChannelDef]:
    """The channels a set has: those it declares, or the built-in ones if it declares none."""
    return declared or BUILTIN_CHANNELS


def load_channels(directory: Path) -> tuple[dict[str, ChannelDef], dict[str, str]]:
    """The channel files of a definitions directory (none: an empty dict), each topic
    used once."""
    channels, files = load_dir(directory, "channels", ChannelDef)
    seen: dict[str, str] = {}
    for cid, channel in sorted(channels.items()):
        other = seen.setdefault(channel.topic_name, cid)
        if other != cid:
            raise DefinitionError(f"{files[cid]}: topic: {channel.topic_name} is channel "
                                  f"{other}'s topic already")
    return channels, files


def channel_topics(directory: Path) -> list[str]:
    """The action topics (logical names) of the channels declared in ``directory``: what
    bootstrap and the schema workflow declare."""
    declared, _ = load_channels(directory) if directory.is_dir() else ({}, {})
    return sorted(c.topic_name for c in in_force(declared).values())
