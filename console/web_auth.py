"""Sign-in and sign-out, the probes, and the console's own metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.app import (
    clear_session_cookie,
    console_of,
    page,
    session_of,
    set_session_cookie,
)
from console.sessions import COOKIE, cookie_secure, may_sign_in
from ingest.auth import ADMIN, credential_from_header
from ingest.errors import AuthError

routes = web.RouteTableDef()


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no ``//host``): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or target.startswith("/login"):
        return "/live"
    return target


@routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/live")


@routes.get("/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    return page(request, "login.html", next=_safe_next(request.query.get("next")),
                message="")


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    key = str(form.get("api_key", "")).strip()
    target = _safe_next(str(form.get("next", "")))
    if not console.keys.loaded():
        return page(request, "login.html", status=503, next=target,
                    message="The API key store is still loading; try again in a moment.")
    principal = console.keys.principal(key) if key else None
    if principal is None or not may_sign_in(principal.scopes):
        console.metrics.logins.labels("refused").inc()
        message = ("Unknown or revoked API key." if principal is None else
                   "This key has neither the profiles:read nor the admin scope.")
        return page(request, "login.html", status=401, next=target, message=message)
    session = console.sessions.create(key, principal, console.keys.name_of(principal.key_id))
    console.metrics.logins.labels("ok").inc()
    console.metrics.sessions.set(len(console.sessions))
    response = web.Response(status=303, headers={"Location": target})
    secure = cookie_secure(console.settings.console_cookie_secure, request.secure)
    idle = int(console.settings.console_session_idle.total_seconds())
    set_session_cookie(response, session, secure, idle)
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    console.sessions.drop(session_of(request).sid)
    console.metrics.sessions.set(len(console.sessions))
    response = web.Response(status=303, headers={"Location": "/login"})
    clear_session_cookie(response, cookie_secure(console.settings.console_cookie_secure,
                                                 request.secure))
    return response


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    ready = console.keys.loaded()
    return web.json_response({"status": "ready" if ready else "loading key store"},
                             status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.StreamResponse:
    """An admin key in the Authorization header, as the gateway's and the workers'."""
    console = console_of(request)
    try:
        principal = console.keys.table.authenticate(
            credential_from_header(request.headers.get("Authorization")))
        principal.require(ADMIN)
    except AuthError as exc:  # ForbiddenScope is one too
        return web.json_response({"error": {"message": str(exc)}},
                                 status=getattr(exc, "status", 401))
    console.metrics.sessions.set(len(console.sessions))
    console.metrics.live_listeners.set(console.hub.listeners)
    if console.live_gate is not None:
        console.metrics.live_skipped.set(console.live_gate.skipped)
    body = generate_latest(console.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


__all__ = ["COOKIE", "routes"]
