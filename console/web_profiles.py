"""Profiles: search by any identifier, then one page with the profile, its audiences,
journeys and held actions, its merges (undo: admin) and its timeline, every decision
explained. Everything comes from the workers' profile API with the operator's key."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from console.app import console_of, fragment, page, session_of
from console.errors import UpstreamError
from console.search import KINDS, BadQuery, parse_query
from console.timeline import KIND_FILTERS, held, rows
from console.worker_api import Answer

routes = web.RouteTableDef()
PAGE = 50


@routes.get("/profiles")
async def search(request: web.Request) -> web.StreamResponse:
    console, session = console_of(request), session_of(request)
    kind, value = request.query.get("kind", "auto"), request.query.get("q", "")
    context: dict[str, Any] = {"kinds": KINDS, "kind": kind, "q": value, "message": ""}
    if not value:
        return page(request, "search.html", **context)
    try:
        query = parse_query(kind, value)
    except BadQuery as exc:
        return page(request, "search.html", status=400, **{**context, "message": str(exc)})
    if query.profile_id is not None:
        raise web.HTTPSeeOther(f"/profiles/{quote(query.profile_id, safe='')}")
    found = await console.api.find(session.authorization(), query.params)
    if found.ok:
        raise web.HTTPSeeOther(f"/profiles/{quote(str(found.body['profile_id']), safe='')}")
    message = (f"No profile has {query.describe()}." if found.status == 404
               else f"The profile API answered {found.status}: {found.message()}")
    return page(request, "search.html", status=404 if found.status == 404 else 502,
                **{**context, "message": message})


async def _gather(request: web.Request, pid: str) -> dict[str, Answer]:
    console, auth = console_of(request), session_of(request).authorization()
    profile, activation, merges, timeline = await asyncio.gather(
        console.api.profile(auth, pid), console.api.activation(auth, pid),
        console.api.merges(auth, pid), console.api.timeline(auth, pid, 0, PAGE))
    return {"profile": profile, "activation": activation, "merges": merges,
            "timeline": timeline}


@routes.get("/profiles/{profile_id}")
async def profile(request: web.Request) -> web.StreamResponse:
    pid = request.match_info["profile_id"]
    answers = await _gather(request, pid)
    if answers["profile"].status == 404:
        return page(request, "search.html", status=404, kinds=KINDS, kind="profile_id",
                    q=pid, message=f"No profile {pid}.")
    failed = next((a for a in answers.values() if not a.ok), None)
    if failed is not None:
        raise UpstreamError(f"the profile API answered {failed.status}: {failed.message()}",
                            failed.status if failed.status >= 500 else 502)
    body = answers["profile"].body
    if body["profile_id"] != pid:  # a merged-away id: show the profile it joined
        raise web.HTTPSeeOther(f"/profiles/{quote(body['profile_id'], safe='')}")
    line = answers["timeline"].body
    return page(request, "profile.html", profile=body,
                activation=answers["activation"].body, held=held(answers["activation"].body),
                merges=answers["merges"].body.get("merges", []), rows=rows(line["items"]),
                total=line.get("total", 0), next_offset=line.get("next_offset"),
                kind_filters=KIND_FILTERS, kind="all", pid=pid)


@routes.get("/profiles/{profile_id}/timeline")
async def timeline(request: web.Request) -> web.StreamResponse:
    console, session = console_of(request), session_of(request)
    pid = request.match_info["profile_id"]
    kind = request.query.get("kind", "all")
    kind = kind if kind in KIND_FILTERS else "all"
    raw = request.query.get("offset", "0")
    offset = int(raw) if raw.isdigit() else 0
    line = await console.api.timeline(session.authorization(), pid, offset, PAGE)
    if not line.ok:
        raise UpstreamError(f"the profile API answered {line.status}: {line.message()}",
                            502)
    nxt = line.body.get("next_offset")
    more = None if nxt is None else "?" + urlencode({"kind": kind, "offset": nxt})
    return fragment(request, "_timeline_rows.html", rows=rows(line.body["items"], kind),
                    more=more, pid=pid, append=offset > 0)


@routes.post("/profiles/{profile_id}/merges/{event_id}/undo")
async def undo(request: web.Request) -> web.StreamResponse:
    """Admin (checked by the guard); the worker checks the key's scope again."""
    console, session = console_of(request), session_of(request)
    pid, event_id = request.match_info["profile_id"], request.match_info["event_id"]
    answer = await console.api.undo_merge(session.authorization(), pid, event_id)
    if answer.status != 202:
        raise UpstreamError(f"undo refused ({answer.status}): {answer.message()}",
                            answer.status if answer.status < 500 else 502)
    console.metrics.changes.labels("undo_merge").inc()
    return fragment(request, "_flash.html", tone="good",
                    message=f"Undo of the merge by event {event_id} accepted: the profile "
                            "stage applies it in a moment; reload to see it.")
