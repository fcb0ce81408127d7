"""Operating pages: dead letters (list, filter by reason, re-drive) and delivery per
destination (outcomes, disabled or not, enable). Changes need the admin scope (the
guard in console/app.py checks it before any of these handlers runs)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from console.app import console_of, fragment, page, session_of
from console.deadletters import DELIVERY, STREAM
from console.errors import Refused, UpstreamError
from console.stats import STATUSES, DestinationTally, hours
from streams.errors import ActivationError

routes = web.RouteTableDef()
LIST_LIMIT = 200
SPARK_HOURS = 48


def _kind(raw: str | None) -> str:
    return DELIVERY if raw == DELIVERY else STREAM


@routes.get("/deadletters")
async def dead_letters(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    kind = _kind(request.query.get("kind"))
    reason = request.query.get("reason") or None
    destination = request.query.get("destination") or None
    index = console.letters(kind)
    entries = index.entries(reason, destination, LIST_LIMIT)
    return page(request, "deadletters.html", kind=kind, reason=reason or "",
                destination=destination or "", entries=entries, reasons=index.reasons(),
                total=index.total(), redriven=index.redriven, limit=LIST_LIMIT)


@routes.post("/deadletters/redrive")
async def redrive(request: web.Request) -> web.StreamResponse:
    console, session = console_of(request), session_of(request)
    form = await request.post()
    kind = _kind(str(form.get("kind", STREAM)))
    offsets = sorted({int(v) for v in form.getall("offset", [])
                      if isinstance(v, str) and v.isdigit()})
    if not offsets:
        raise Refused(400, "choose the dead letters to re-drive")
    try:
        done = await asyncio.to_thread(console.operations.redrive, kind, offsets)
    except ActivationError as exc:
        raise UpstreamError(f"re-drive failed: {exc}") from exc
    console.letters(kind).mark_redriven(offsets, datetime.now(UTC), session.name)
    console.metrics.changes.labels("redrive").inc(done.sent)
    skipped = (f"; {done.skipped} skipped: re-driven three times already"
               if done.skipped else "")
    return fragment(request, "_flash.html", tone="good",
                    message=f"Re-drove {done.sent} dead letter(s){skipped}. Watch them "
                            "arrive on the live page.")


@dataclass(frozen=True)
class DestinationRow:
    destination: str
    url: str
    channels: str
    counts: dict[str, int]
    last_at: datetime | None
    last_failure: str
    disabled: dict[str, object] | None
    dead_letters: int
    delivered_points: list[int]
    failed_points: list[int]
    defined: bool


def _where(spec: object | None, override: str | None) -> tuple[str, str]:
    """(URL without its query, which may carry a token; channels) of a destination."""
    if spec is None:
        return "", ""
    url = (override or str(getattr(spec, "url", ""))).split("?", 1)[0]
    channels = sorted({str(r.channel) for r in getattr(spec, "routes", [])})
    return url, ", ".join(channels)


def _destination_rows(request: web.Request) -> list[DestinationRow]:
    console = console_of(request)
    defs = console.history.definitions()
    declared = defs.destinations if defs is not None else {}
    stats = console.stats.snapshot().destinations
    disabled = console.control.disabled()
    letters = console.delivery_letters.by_destination()
    buckets = hours(datetime.now(UTC), SPARK_HOURS)
    out = []
    for dest in sorted(set(declared) | set(stats) | set(disabled)):
        tally = stats.get(dest) or DestinationTally()
        spec = declared.get(dest)
        url, channels = _where(spec, console.settings.delivery_url_overrides.get(dest))
        failed = [sum(col) for col in zip(*(tally.statuses[s].points(buckets)
                                            for s in ("failed", "dead_lettered")),
                                          strict=True)] if tally.statuses else []
        out.append(DestinationRow(
            dest, url, channels,
            {s: tally.count(s) for s in STATUSES}, tally.last_at, tally.last_failure,
            disabled.get(dest), letters.get(dest, 0),
            tally.statuses["delivered"].points(buckets) if tally.statuses else [], failed,
            spec is not None))
    return out


@routes.get("/delivery")
async def delivery(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    return page(request, "delivery.html", rows=_destination_rows(request),
                statuses=STATUSES, window=console.settings.console_stats_window,
                spark_hours=SPARK_HOURS)


@routes.post("/delivery/{destination}/enable")
async def enable(request: web.Request) -> web.StreamResponse:
    console, session = console_of(request), session_of(request)
    destination = request.match_info["destination"]
    try:
        await asyncio.to_thread(console.operations.enable, destination,
                                f"{session.name} (console)")
    except ActivationError as exc:
        raise UpstreamError(f"could not enable {destination}: {exc}") from exc
    console.metrics.changes.labels("enable_destination").inc()
    return fragment(request, "_flash.html", tone="good",
                    message=f"{destination} enabled for every executor (within a second).")
