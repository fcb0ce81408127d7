"""Definitions (versions, who and when, diffs, rollout) and audiences and journeys
(sizes and activity over time, each journey's funnel)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from console.app import console_of, page, session_of
from console.definitions import diff_lines, rollout_state, rows
from console.errors import UpstreamError
from console.funnel import OUTCOMES, funnels, parse
from console.stats import hours

routes = web.RouteTableDef()
SPARK_HOURS = 48


def _sequence(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


@routes.get("/definitions")
async def definitions(request: web.Request) -> web.StreamResponse:
    history = console_of(request).history
    publications = history.publications()
    new_seq = _sequence(request.query.get("new"))
    old_seq = _sequence(request.query.get("old"))
    new = history.by_sequence(new_seq) if new_seq else (publications[-1] if publications
                                                        else None)
    old = history.by_sequence(old_seq) if old_seq else None
    if old is None and new is not None:  # the publication before ``new``
        before = [p for p in publications if p.sequence < new.sequence]
        old = before[-1] if before else None
    lines = diff_lines(old, new) if old is not None and new is not None else []
    return page(request, "definitions.html", rows=rows(history), state=rollout_state(history),
                proposals=history.proposals(), old=old, new=new, lines=lines)


@dataclass(frozen=True)
class AudienceRow:
    audience_id: str
    description: str
    size: int
    entered: int
    exited: int
    since: datetime | None
    points: list[int]


def _audiences(request: web.Request) -> list[AudienceRow]:
    console = console_of(request)
    defs = console.history.definitions()
    declared = defs.audiences if defs is not None else {}
    stats = console.stats.snapshot().audiences
    buckets = hours(datetime.now(UTC), SPARK_HOURS)
    out = []
    for aid in sorted(set(declared) | set(stats)):
        tally = stats.get(aid)
        spec = declared.get(aid)
        description = spec.description if spec else "(no longer defined)"
        if tally is None:
            out.append(AudienceRow(aid, description, 0, 0, 0, None, [0] * len(buckets)))
            continue
        out.append(AudienceRow(aid, description, tally.size(), tally.entered.total(),
                               tally.exited.total(), tally.since, tally.size_points(buckets)))
    return out


def _journey_sends(request: web.Request) -> dict[str, dict[str, int]]:
    steps = console_of(request).stats.snapshot().steps
    out: dict[str, dict[str, int]] = {}
    for (journey, step), tally in steps.items():
        out.setdefault(journey, {})[step] = tally.total()
    return out


def _journey_points(request: web.Request) -> dict[str, list[int]]:
    steps = console_of(request).stats.snapshot().steps
    buckets = hours(datetime.now(UTC), SPARK_HOURS)
    out: dict[str, list[int]] = {}
    for (journey, _), tally in steps.items():
        points = tally.points(buckets)
        out[journey] = [a + b for a, b in zip(out.get(journey, [0] * len(points)), points,
                                              strict=True)]
    return out


@routes.get("/activity")
async def activity(request: web.Request) -> web.StreamResponse:
    console, session = console_of(request), session_of(request)
    counters, funnel_message = None, ""
    if session.can_change_state:  # the workers' /metrics needs the admin scope
        try:
            counters = parse(await console.api.metrics(session.authorization()))
        except UpstreamError as exc:
            funnel_message = str(exc)
    else:
        funnel_message = ("The funnel comes from the workers' /metrics, which needs the "
                          "admin scope; this key is read-only.")
    return page(request, "activity.html", audiences=_audiences(request),
                funnels=funnels(counters, console.history.definitions()) if counters else [],
                counters=counters, funnel_message=funnel_message, outcomes=OUTCOMES,
                sends=_journey_sends(request), journey_points=_journey_points(request),
                window=console.settings.console_stats_window, spark_hours=SPARK_HOURS)
