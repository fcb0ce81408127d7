"""The worker's web gate: every endpoint but the probes needs an API key.

Keys are the gateway's: the worker follows the same compacted key topic as every
gateway (read-only), so a key created or revoked with ``scripts/apikeys`` counts here
within seconds too. :class:`WebGate` is an aiohttp middleware that
``streams.app.create_app`` hands to Faust's web server through the public
``web_application_options`` setting, so it runs before every route the server has:
the profile API, ``/metrics``, Faust's own pages, and any view added later, whatever
imported what. What a request needs:

- ``/healthz`` and ``/readyz`` (exact paths): nothing, they are the probes;
- ``GET``/``HEAD`` under ``/v1/profiles``, and ``POST /v1/profiles/<id>/decide`` (a
  question with no side effect): a key with ``profiles:read``;
- anything else (undoing a merge, ``/metrics``, Faust's pages, unknown paths):
  a key with ``admin``, as the gateway's ``/metrics``.

It fails closed: until a :class:`KeyCheck` is installed (``create_app`` does) every
request but the probes is refused with 503, and so it is until the key topic has been
read. A missing or unknown key is 401, a key without the scope 403.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ingest.auth import ADMIN, PROFILES_READ, KeyTable, credential_from_header
from ingest.errors import AuthError, ForbiddenScope
from ingest.keystore import KeyTopicReader
from streams.settings import Settings

PUBLIC = frozenset({"/healthz", "/readyz"})
READ_SCOPE = "profiles:read"
ADMIN_SCOPE = "profiles:admin"
# The worker's scope names, mapped onto the key store's scopes.
SCOPES = {READ_SCOPE: PROFILES_READ, ADMIN_SCOPE: ADMIN}
READ_METHODS = frozenset({"GET", "HEAD"})
ASK_SUFFIX = "/decide"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


class KeyCheck:
    """The gateway's key table, filled by a reader of the key topic (none in tests)."""

    def __init__(self, table: KeyTable, reader: KeyTopicReader | None = None) -> None:
        self.table, self.reader = table, reader

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyCheck:
        table = KeyTable(settings.api_key_pepper.get_secret_value())
        return cls(table, KeyTopicReader(settings, table))

    def loaded(self) -> bool:
        return self.reader is None or self.reader.loaded.is_set()

    def require(self, header: str | None, scope: str) -> None:
        """Raise :class:`AuthError` (:class:`ForbiddenScope`: the key lacks ``scope``)."""
        principal = self.table.authenticate(credential_from_header(header))
        principal.require(SCOPES[scope])

    async def start(self) -> None:
        if self.reader is not None:
            self.reader.start()


def authorize(table: KeyTable, header: str | None, scope: str) -> bool:
    """True if the Authorization header carries a live key with ``scope``."""
    try:
        KeyCheck(table).require(header, scope)
    except AuthError:  # ForbiddenScope is an AuthError too
        return False
    return True


def scope_for(method: str, path: str) -> str | None:
    """The scope a request needs; None for the probes."""
    if path in PUBLIC:
        return None
    if method in READ_METHODS and (path == "/v1/profiles" or path.startswith("/v1/profiles/")):
        return READ_SCOPE
    if method == "POST" and path.startswith("/v1/profiles/") and path.endswith(ASK_SUFFIX) \
            and path.count("/") == 4:  # /v1/profiles/<id>/decide: a question, no change
        return READ_SCOPE
    return ADMIN_SCOPE


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def response(self) -> web.Response:
        body = json.dumps({"error": {"code": self.code, "message": self.message}})
        headers = {"Retry-After": "1"} if self.status == 503 else {}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="activation-worker"'
        return web.Response(text=body, status=self.status, content_type="application/json",
                            headers=headers)


class WebGate:
    """Refuses every request a key does not allow; nothing is allowed before
    :meth:`install` (fail closed)."""

    def __init__(self) -> None:
        self.keys: KeyCheck | None = None

    def install(self, keys: KeyCheck) -> None:
        self.keys = keys

    def ready(self) -> bool:
        """Keys can be checked: a key check installed and its key topic read."""
        return self.keys is not None and self.keys.loaded()

    def refusal(self, method: str, path: str, header: str | None) -> Refusal | None:
        """Why the request is refused, or None when it may go on."""
        scope = scope_for(method, path)
        if scope is None:
            return None
        if self.keys is None:
            return Refusal(503, "auth_unavailable", "no API key check is installed")
        if not self.keys.loaded():
            return Refusal(503, "auth_unavailable", "API key store is still loading")
        try:
            self.keys.require(header, scope)
        except ForbiddenScope:
            return Refusal(403, "forbidden", f"this API key lacks the {scope!r} scope")
        except AuthError as exc:
            return Refusal(401, "unauthorized", f"{exc}; scope {scope} is needed")
        return None

    def middleware(self) -> Middleware:
        """The aiohttp middleware (for ``web_application_options={"middlewares": ...}``)."""

        @web.middleware
        async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
            refused = self.refusal(request.method, request.path,
                                   request.headers.get("Authorization"))
            return await handler(request) if refused is None else refused.response()

        return require_key
