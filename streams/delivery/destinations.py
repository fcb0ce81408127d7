"""Destinations: where the delivery executor sends action commands, declared as YAML
definitions (``definitions/destinations/<id>.yaml``) and published with the rest, so
every executor applies the same version.

::

    url: https://crm.example.com/hooks/activation
    method: POST                      # POST (default) or PUT
    timeout: PT10S                    # per attempt
    concurrency: 8                    # requests in flight to this destination
    rate_limit: 50                    # requests per second (optional)
    auth: {header: Authorization, scheme: Bearer, secret: CRM_TOKEN}   # optional
    signing_secrets: [CRM_WEBHOOK_V2, CRM_WEBHOOK_V1]                   # optional
    routes:                           # which commands go here
      - {channel: crm}
      - {channel: email, action_types: [send_email]}
    deletion_url: https://crm.example.com/hooks/erasures   # optional: erasures go here

An ``erase_profile`` command (the right to be forgotten, streams/core/erasure.py) goes
to every destination with a ``deletion_url`` and a route on its channel, at that URL.

Secrets are *names*: their values live in settings (``ACTIVATION_DELIVERY_SECRETS``,
a JSON object), never in the definitions topic. Every named signing secret signs each
request (Standard Webhooks' rotation: receivers accept any of the signatures).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

# A channel's name (definitions/channels/; the loader checks a route names one declared).
Channel = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ERASE_PROFILE = "erase_profile"
SECRET_NAME = r"^[A-Z][A-Z0-9_]{0,63}$"  # noqa: S105 - a name pattern, not a secret


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Strict):
    channel: Channel
    action_types: list[str] | None = None  # None: every action type of the channel

    def matches(self, command: Mapping[str, Any]) -> bool:
        return command["channel"] == self.channel and (
            self.action_types is None or command["action_type"] in self.action_types)


class Auth(_Strict):
    header: str = Field("Authorization", min_length=1)
    scheme: str | None = "Bearer"  # the value is "<scheme> <secret>", or the secret alone
    secret: str = Field(pattern=SECRET_NAME)


class Destination(_Strict):
    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")
    description: str = ""
    url: HttpUrl
    method: Literal["POST", "PUT"] = "POST"
    timeout: timedelta = timedelta(seconds=10)
    concurrency: int = Field(4, ge=1, le=256)
    rate_limit: float | None = Field(None, gt=0, description="requests per second")
    auth: Auth | None = None
    signing_secrets: list[str] = Field(default_factory=list)
    routes: list[Route] = Field(min_length=1)
    deletion_url: HttpUrl | None = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=5):
            raise ValueError("must be between 0 and PT5M")
        return value

    @field_validator("signing_secrets")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(SECRET_NAME, v)]
        if bad:
            raise ValueError(f"secret names are UPPER_SNAKE_CASE settings keys, got {bad}")
        return value

    def accepts(self, command: Mapping[str, Any]) -> bool:
        if command["action_type"] == ERASE_PROFILE:
            return self.deletion_url is not None and any(
                r.channel == command["channel"] for r in self.routes)
        return any(route.matches(command) for route in self.routes)

    def url_for(self, command: Mapping[str, Any]) -> str:
        erase = command["action_type"] == ERASE_PROFILE and self.deletion_url is not None
        return str(self.deletion_url if erase else self.url)

    def secret_names(self) -> list[str]:
        return [*self.signing_secrets, *([self.auth.secret] if self.auth else [])]


def routed(destinations: Mapping[str, Destination], command: Mapping[str, Any]
           ) -> list[Destination]:
    """The destinations a command goes to, in id order (deterministic fan-out)."""
    return [d for _, d in sorted(destinations.items()) if d.accepts(command)]


class Router:
    """:func:`routed`, remembered per definition set and (channel, action type): what a
    destination accepts depends on nothing else, and routing each command anew (a sort
    and every route of every destination) was a twentieth of the executor's time."""

    MAX_KEYS = 1024  # action types are a handful; a flood of new ones starts over

    def __init__(self) -> None:
        self._of: object = None  # the definition set the answers are for (held: identity)
        self._routes: dict[tuple[str, str], list[Destination]] = {}

    def __call__(self, of: object, destinations: Mapping[str, Destination],
                 command: Mapping[str, Any]) -> list[Destination]:
        """The destinations of ``command`` in ``of`` (whose ``destinations`` they are)."""
        if of is not self._of or len(self._routes) >= self.MAX_KEYS:
            self._of, self._routes = of, {}
        key = (command["channel"], command["action_type"])
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = routed(destinations, command)
        return found


def missing_secrets(destinations: Mapping[str, Destination], known: set[str]
                    ) -> dict[str, list[str]]:
    """Destination id -> the secret names it needs that settings do not hold."""
    out = {did: [n for n in d.secret_names() if n not in known]
           for did, d in sorted(destinations.items())}
    return {k: v for k, v in out.items() if v}
