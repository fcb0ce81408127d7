"""Live events: the page, its server-sent event stream, and the "which profile did it
reach" check each event row asks for once the workers had time to apply it."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from console.app import console_of, fragment, page, session_of
from console.errors import UpstreamError
from console.live import LiveItem
from console.search import KINDS

routes = web.RouteTableDef()
KEEPALIVE_S = 5.0
REACH_TRIES = 15  # about 30 s of asking, then the row says it did not arrive
ID_KINDS = ("customer_id", "email_sha256", "phone_sha256", "anonymous_id")


def sse(event: str, html: str) -> bytes:
    """One server-sent event; every line of the data gets its own ``data:``."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


@routes.get("/live")
async def live(request: web.Request) -> web.StreamResponse:
    only = request.query.get("only", "")
    return page(request, "live.html", only="problems" if only == "problems" else "")


def _row(request: web.Request, item: LiveItem) -> str:
    return console_of(request).render("_live_row.html", item=item, kinds=KINDS)


def _stats(request: web.Request) -> str:
    console = console_of(request)
    gate = console.live_gate
    shown, skipped = (gate.passed, gate.skipped) if gate is not None else (0, 0)
    return console.render("_live_stats.html", shown=shown, skipped=skipped,
                          dropped=console.hub.dropped,
                          rate=console.settings.console_live_rate)


@routes.get("/live/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    console, session = console_of(request), session_of(request)
    problems_only = request.query.get("only") == "problems"
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = console.hub.subscribe()
    try:
        await response.write(sse("stats", _stats(request)))
        for item in list(console.hub.recent):  # oldest first: each goes on top
            if not problems_only or item.problem:
                await response.write(sse("live", _row(request, item)))
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if console.keys.principal(session.key.get_secret_value()) is None:
                    break  # the key was revoked: the stream ends with the session
                await response.write(sse("stats", _stats(request)))
                continue
            if not problems_only or item.problem:
                await response.write(sse("live", _row(request, item)))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        console.hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


@routes.get("/live/reached")
async def reached(request: web.Request) -> web.StreamResponse:
    """Whether an event is on a profile's timeline yet: the guide's check."""
    console, session = console_of(request), session_of(request)
    kind, value = request.query.get("kind", ""), request.query.get("value", "")
    event_id = request.query.get("event", "")
    raw_try = request.query.get("try", "0")
    tries = int(raw_try) if raw_try.isdigit() else 0
    context = {"kind": kind, "value": value, "event_id": event_id, "tries": tries + 1,
               "give_up": tries + 1 >= REACH_TRIES, "profile_id": "", "state": "waiting",
               "message": ""}
    if kind not in ID_KINDS or not value or not event_id:
        return fragment(request, "_reached.html", **{**context, "state": "none"})
    try:
        found = await console.api.find(session.authorization(), {kind: value})
        if found.ok:
            pid = str(found.body["profile_id"])
            context["profile_id"] = pid
            line = await console.api.timeline(session.authorization(), pid, 0, 200)
            items = line.body.get("items", []) if line.ok else []
            on_it = any(i.get("event_id") == event_id for i in items)
            context["state"] = "arrived" if on_it else "profile"
        elif found.status != 404:
            context["message"] = found.message()
    except UpstreamError as exc:
        context["message"] = str(exc)
    return fragment(request, "_reached.html", **context)
