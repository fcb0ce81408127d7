"""Profile API served by the worker (Faust web views) and its Prometheus endpoint.

GET /v1/profiles?customer_id=|email_sha256=|phone_sha256=|anonymous_id=
GET /v1/profiles/{profile_id}              (a merged-away id answers with the winner)
GET /v1/profiles/{profile_id}/timeline?offset=0&limit=50
GET /v1/profiles/{profile_id}/merges
GET /v1/profiles/{profile_id}/activation   (audiences, journeys, next timer)
GET /v1/ownership   (admin: which partitions of each stage this worker and the group own)
POST /v1/profiles/{profile_id}/decide   (scope profiles:read; no side effect)
POST /v1/profiles/{profile_id}/merges/{event_id}/undo   (scope profiles:admin; 202)
POST /v1/erasures   (admin; 202)
GET /metrics

The reads are here; the commands (decide, undo, erase) are in agents/api_commands.py,
and finding a profile's store or its owner in agents/api_reader.py.

Any worker answers for any profile: a request for a profile whose partition another
worker owns is forwarded to that worker (its URL, ``ACTIVATION_WORKER_ADVERTISED_HOST``
and the web port, is shared through the consumer group), once; the answer carries
``X-Activation-Served-By``. While a partition is being restored after a start or a
rebalance, the answer is 503 ``state_unavailable`` with ``Retry-After``.

No view checks API keys: the web gate (agents/auth.py) does, before every route
of the worker's web server, and refuses everything until its key check is installed
(``streams.app.create_app``): ``profiles:read`` for the reads, ``admin`` for undoing a
merge and for ``/metrics``. A forwarded request carries the caller's key, and the
owner's gate checks it again.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from agents.activation import Activation
from agents.api_commands import Decide, Erasures, UndoMerge
from agents.api_reader import MAX_PAGE, ProfileReader, error_answer, int_param, not_found
from agents.context import Worker
from streams.activation.notes import read_notes
from streams.activation.runtime import activation_view
from streams.core.identity import KIND_PREFIX
from streams.core.pipeline import load_profile, merge_history
from streams.core.profile import timeline_page, to_api


def install(w: Worker, activation: Activation) -> None:
    """The profile API's routes and ``/metrics`` on the worker's web server."""
    reader = ProfileReader(w)
    _install_reads(w, reader)
    _install_timeline(w, reader)
    _install_profile_views(w, reader)
    w.app.page("/v1/profiles/{profile_id}/decide")(
        type("DecideView", (Decide,), {"worker": w, "reader": reader,
                                       "activation": activation}))
    w.app.page("/v1/profiles/{profile_id}/merges/{event_id}/undo")(
        type("UndoMergeView", (UndoMerge,), {"worker": w, "reader": reader}))
    w.app.page("/v1/erasures")(type("ErasuresView", (Erasures,), {"worker": w}))

    async def ownership(web: Any, request: Any) -> Any:
        """Which partitions of each stage this worker owns, and the group's assignment
        of the Faust stages to every worker (admin: the gate's default)."""
        return web.json(ownership_of(w))

    w.app.page("/v1/ownership")(ownership)

    async def metrics_page(web: Any, request: Any) -> Any:
        """The worker's Prometheus metrics (the gate asks an admin key, as the gateway's)."""
        return web.bytes(generate_latest(w.registry), content_type="text/plain")

    w.app.page("/metrics")(metrics_page)


def ownership_of(w: Worker) -> dict[str, Any]:
    """This worker's partitions per stage, and the group's view of the Faust stages
    (every member's URL and partitions, as the assignor shares them)."""
    stages = {w.identity_topic.get_topic_name(): "stream.identity",
              w.profiles_topic.get_topic_name(): "stream.profile"}
    owned: dict[str, list[int]] = {stage: [] for stage in stages.values()}
    for tp in w.app.consumer.assignment():
        if tp.topic in stages:
            owned[stages[tp.topic]].append(tp.partition)
    assignor: Any = w.app.assignor
    group = {url: {stages[t]: sorted(parts) for t, parts in topics.items() if t in stages}
             for url, topics in assignor.external_topics_metadata().items()}
    return {"worker": str(w.app.conf.canonical_url),
            "owned": {"stream.screen": list(w.screening_partitions),
                      **{stage: sorted(parts) for stage, parts in owned.items()}},
            "group": group}


def _install_reads(w: Worker, reader: ProfileReader) -> None:
    """A profile found by one of its identifiers, or by its id."""
    page = w.app.page

    @page("/v1/profiles")
    async def profiles_by_identifier(web: Any, request: Any) -> Any:
        query = {k: v for k, v in request.query.items() if k in KIND_PREFIX}
        if not query:
            kinds = ", ".join(KIND_PREFIX)
            return error_answer(web, 400, "missing_identifier", f"give one of: {kinds}")

        def fetch() -> Any:
            profile = reader.lookup_by_identifier(query)
            return not_found(web, str(query)) if profile is None else web.json(to_api(profile))

        return await reader.guarded(web, request, fetch)

    @page("/v1/profiles/{profile_id}")
    async def profile_by_id(web: Any, request: Any, profile_id: str) -> Any:
        def fetch() -> Any:
            profile = reader.find_profile(profile_id)
            return not_found(web, profile_id) if profile is None else web.json(to_api(profile))

        return await reader.guarded(web, request, fetch)


def _install_timeline(w: Worker, reader: ProfileReader) -> None:
    """A page of a profile's timeline, with activation's notes on it."""

    @w.app.page("/v1/profiles/{profile_id}/timeline")
    async def profile_timeline(web: Any, request: Any, profile_id: str) -> Any:
        offset = int_param(request.query.get("offset"), 0, 1_000_000)
        limit = int_param(request.query.get("limit"), 50, MAX_PAGE) or 1

        def fetch() -> Any:
            store, pid = reader.locate(profile_id)
            profile = load_profile(store, pid)
            if profile is None:
                return not_found(web, profile_id)
            notes = read_notes(lambda prefix, n: store.scan(prefix, n, prefix), pid,
                               w.settings.profile_timeline_limit)
            return web.json(timeline_page(profile, offset, limit, notes))

        return await reader.guarded(web, request, fetch, "/timeline")


def _install_profile_views(w: Worker, reader: ProfileReader) -> None:
    page = w.app.page

    @page("/v1/profiles/{profile_id}/merges")
    async def profile_merges(web: Any, request: Any, profile_id: str) -> Any:
        def fetch() -> Any:
            profile = reader.find_profile(profile_id)
            if profile is None:
                return not_found(web, profile_id)
            store, _ = reader.locate(profile.profile_id)
            merges = [m.explain() for m in merge_history(store, profile.profile_id)]
            return web.json({"profile_id": profile.profile_id, "merges": merges})

        return await reader.guarded(web, request, fetch, "/merges")

    @page("/v1/profiles/{profile_id}/activation")
    async def profile_activation(web: Any, request: Any, profile_id: str) -> Any:
        def fetch() -> Any:
            profile = reader.find_profile(profile_id)
            if profile is None:
                return not_found(web, profile_id)
            store, _ = reader.locate(profile.profile_id)
            return web.json(activation_view(store, profile.profile_id))

        return await reader.guarded(web, request, fetch, "/activation")
