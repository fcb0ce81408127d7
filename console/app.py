"""The console's aiohttp application: who may see and do what, and the parts the pages
read. :func:`create_app` takes a :class:`Console` (``build`` makes the real one from the
settings; tests hand in fakes), so nothing is made at import.

Every page needs a session (sign-in by API key, console/sessions.py); the key is checked
against the key store on every request. Every state change (any POST but sign-in and
sign-out) needs the admin scope and the session's CSRF token, checked here, on the
server, whatever the page showed: a read key can change nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from aiohttp import web
from jinja2 import Environment
from prometheus_client import CollectorRegistry

from console.access import Keys
from console.deadletters import DELIVERY, STREAM, DeadLetterIndex
from console.definitions import History
from console.errors import ConsoleError, Refused
from console.live import LiveHub
from console.metrics import ConsoleMetrics
from console.operations import Operations
from console.render import templates
from console.sessions import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionStore,
    cookie_attributes,
    may_sign_in,
)
from console.stats import Stats
from console.worker_api import WorkerApi
from streams.delivery.control import Control
from streams.settings import Settings

log = logging.getLogger("console.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/readyz", "/metrics"})
SESSION_POSTS = frozenset({"/login", "/logout"})  # every other POST changes state
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class Background(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Console:
    """Everything the pages read and do."""

    settings: Settings
    keys: Keys
    sessions: SessionStore
    api: WorkerApi
    hub: LiveHub
    history: History
    stats: Stats
    stream_letters: DeadLetterIndex
    delivery_letters: DeadLetterIndex
    control: Control
    operations: Operations
    metrics: ConsoleMetrics
    registry: CollectorRegistry
    env: Environment = field(default_factory=templates)
    background: list[Background] = field(default_factory=list)
    http: httpx.AsyncClient | None = None
    live_gate: Any = None  # the live feed's RateGate (for the skipped count)

    def letters(self, kind: str) -> DeadLetterIndex:
        return self.delivery_letters if kind == DELIVERY else self.stream_letters

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(settings=self.settings, **context)


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def page(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A full page (or, for an htmx request, the same template: htmx picks what it needs)."""
    console = console_of(request)
    session = request.get(SESSION)
    html = console.render(name, session=session, path=request.path, **context)
    return web.Response(text=html, status=status, content_type="text/html")


def fragment(request: web.Request, name: str, **context: Any) -> web.Response:
    return page(request, name, **context)


def _is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _login_redirect(request: web.Request) -> web.StreamResponse:
    target = "/login?next=" + quote(request.path_qs, safe="")
    if _is_htmx(request):
        return web.Response(status=401, headers={"HX-Redirect": target})
    if request.method != "GET":
        raise Refused(401, "your session ended: sign in again")
    raise web.HTTPSeeOther(target)


def _current_session(request: web.Request, console: Console) -> Session | None:
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    principal = console.keys.principal(session.key.get_secret_value())
    if principal is None or not may_sign_in(principal.scopes):  # revoked or narrowed
        console.sessions.drop(session.sid)
        return None
    if principal.scopes != session.scopes:
        console.sessions.refresh(session.sid, principal.scopes)
        session = console.sessions.get(session.sid) or session
    return session


async def _csrf_token(request: web.Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.content_type == "application/x-www-form-urlencoded":
        value = (await request.post()).get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    return token


async def _check_change(request: web.Request, console: Console, session: Session) -> None:
    """A state change: the admin scope and the session's CSRF token, or refused."""
    if not session.can_change_state:
        console.metrics.refused.labels("scope").inc()
        raise Refused(403, f"the key {session.name!r} is read-only: re-driving, undoing "
                           "a merge and enabling a destination need the admin scope")
    if not session.csrf_matches(await _csrf_token(request)):
        console.metrics.refused.labels("csrf").inc()
        raise Refused(403, "this form is stale or came from elsewhere (CSRF token); "
                           "reload the page and try again")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, scopes and CSRF for every route but the public ones and static files."""
    console = console_of(request)
    if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
        return await handler(request)
    if not console.keys.loaded():
        raise Refused(503, "the API key store is still loading; retry in a moment")
    session = _current_session(request, console)
    if session is None:
        return _login_redirect(request)
    request[SESSION] = session
    if request.method not in ("GET", "HEAD") and request.path not in SESSION_POSTS:
        await _check_change(request, console, session)
    return await handler(request)


@web.middleware
async def answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages (or fragments), security headers, request counts."""
    console = console_of(request)
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects, and aiohttp's own 404/405
        if exc.status < 400:
            response = web.Response(status=exc.status, headers=exc.headers)
        else:
            response = _error(request, exc.status,
                              "no such page" if exc.status == 404 else exc.reason)
    except ConsoleError as exc:
        response = _error(request, exc.status, str(exc))
    console.metrics.requests.labels(name, str(response.status)).inc()
    if not response.prepared:
        _harden(response, request)
    return response


def _error(request: web.Request, status: int, message: str) -> web.Response:
    template = "_error.html" if _is_htmx(request) else "error.html"
    response = page(request, template, status=status, status_code=status, message=message)
    if _is_htmx(request):  # htmx swaps only 2xx by default: show the error where asked
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def _harden(response: web.StreamResponse, request: web.Request) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def set_session_cookie(response: web.StreamResponse, session: Session, secure: bool,
                       idle_seconds: int) -> None:
    response.set_cookie(COOKIE, session.sid, **cookie_attributes(secure, idle_seconds))


def clear_session_cookie(response: web.StreamResponse, secure: bool) -> None:
    response.del_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="Strict")


async def _start(app: web.Application) -> None:
    console = app[CONSOLE]
    console.hub.bind(asyncio.get_running_loop())
    console.keys.start()
    for part in console.background:
        part.start()


async def _stop(app: web.Application) -> None:
    console = app[CONSOLE]
    for part in console.background:
        part.stop()
    console.keys.stop()
    if console.http is not None:
        await console.http.aclose()


def create_app(console: Console) -> web.Application:
    from console import web_auth, web_live, web_overview, web_profiles, web_work

    app = web.Application(middlewares=[answers, guard], client_max_size=64 * 1024)
    app[CONSOLE] = console
    for module in (web_auth, web_live, web_profiles, web_work, web_overview):
        app.add_routes(module.routes)
    app.router.add_static("/static/", STATIC, append_version=True)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


__all__ = ["CONSOLE", "Console", "DELIVERY", "SESSION", "STREAM", "create_app", "page"]
