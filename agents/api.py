"""Profile API served by the worker (Faust web views) and its Prometheus endpoint.

GET /v1/profiles?customer_id=|email_sha256=|phone_sha256=|anonymous_id=
GET /v1/profiles/{profile_id}              (a merged-away id answers with the winner)
GET /v1/profiles/{profile_id}/timeline?offset=0&limit=50
GET /v1/profiles/{profile_id}/merges
GET /v1/profiles/{profile_id}/activation   (audiences, journeys, next timer)
GET /v1/ownership   (admin: which partitions of each stage this worker and the group own)
POST /v1/profiles/{profile_id}/decide   (scope profiles:read; no side effect)
POST /v1/profiles/{profile_id}/merges/{event_id}/undo   (scope profiles:admin; 202)
GET /metrics

Any worker answers for any profile: a request for a profile whose partition another
worker owns is forwarded to that worker (its URL, ``ACTIVATION_WORKER_ADVERTISED_HOST``
and the web port, is shared through the consumer group), once; the answer carries
``X-Activation-Served-By``. While a partition is being restored after a start or a
rebalance, the answer is 503 ``state_unavailable`` with ``Retry-After``.

No view here checks API keys: the web gate (agents/auth.py) does, before every route
of the worker's web server, and refuses everything until its key check is installed
(``streams.app.create_app``): ``profiles:read`` for the reads, ``admin`` for undoing a
merge and for ``/metrics``. A forwarded request carries the caller's key, and the
owner's gate checks it again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from faust.web import View
from prometheus_client import generate_latest

from agents.activation import Activation
from agents.context import Worker
from streams.activation.ask import BadQuestion, Question, would_decide
from streams.activation.notes import read_notes
from streams.activation.runtime import activation_view, clock_now, load_state
from streams.core.erasure import MODES, Request
from streams.core.identity import KIND_PREFIX, identifier_keys
from streams.core.identity_messages import UndoMerge as UndoMessage
from streams.core.identity_messages import encode
from streams.core.pipeline import canonical_id, load_profile, merge_history
from streams.core.profile import Profile, timeline_page, to_api
from streams.core.routing import (
    COMMAND_HEADER,
    ERASE,
    IDENTITY_PROTOCOL,
    UNDO_MERGE,
    key_slot,
    partition_of,
    profile_slot,
)
from streams.records import Identifiers
from tables.state import StateStore

log = logging.getLogger(__name__)
# A request for a profile whose partition another worker owns is forwarded to it once.
FORWARDED_HEADER = "X-Activation-Forwarded-By"
SERVED_BY_HEADER = "X-Activation-Served-By"
FORWARD_TIMEOUT_S = 5.0
MAX_HOPS = 3  # identity owner, then a partition's, then one merge further
MAX_PAGE = 200


def _error(web: Any, status: int, code: str, message: str) -> Any:
    return web.json({"error": {"code": code, "message": message}}, status=status)


class NotServedHere(Exception):
    """A store behind the answer is not claimed by this worker: still being restored
    from its changelog, or its partition is owned by another worker."""

    def __init__(self, store: StateStore, profile_id: str | None = None) -> None:
        super().__init__(f"state {store.label} is not served by this worker right now "
                         "(being restored after a start or a rebalance, or owned by "
                         "another worker); retry shortly")
        self.store, self.profile_id = store, profile_id


def served(store: StateStore, profile_id: str | None = None) -> StateStore:
    if not store.claimed:
        raise NotServedHere(store, profile_id)
    return store


def _unavailable(web: Any, exc: NotServedHere) -> Any:
    response = _error(web, 503, "state_unavailable", str(exc))
    response.headers["Retry-After"] = "1"
    return response


def _not_found(web: Any, what: str) -> Any:
    return _error(web, 404, "profile_not_found", f"no profile for {what}")


def _int(value: str | None, default: int, high: int) -> int:
    try:
        return max(0, min(high, int(value))) if value is not None else default
    except ValueError:
        return default


class ProfileReader:
    """Finds a profile in this worker's stores, or says which store it lacks."""

    def __init__(self, w: Worker) -> None:
        self.w = w

    def profile_store(self, pid: str) -> StateStore:
        return served(self.w.profile_states[partition_of(pid, self.w.partitions)], pid)

    def locate(self, profile_id: str) -> tuple[StateStore, str]:
        """The profile stage store that holds ``profile_id``'s history, and its id there:
        the identity graph's redirects (when this worker serves it), then the
        partitions' own (a merge the identity stage made is recorded there before the
        profile partitions have carried it out; without the graph, an answer can trail
        a merge in flight by that long). :class:`NotServedHere` names the id it stopped
        at."""
        pid = self.graph_canonical(profile_id)
        store = self.profile_store(pid)
        for _ in range(8):  # a chain of merges across partitions, followed a few hops
            nxt = canonical_id(store, pid)
            if nxt == pid:
                break
            pid = nxt
            store = self.profile_store(pid)
        return store, pid

    def graph_canonical(self, profile_id: str) -> str:
        """``profile_id`` followed through the identity graph's redirects, as far as
        this worker serves the slots they are in (each profile's redirect lives in its
        own slot: ``profile_slot``)."""
        w, pid = self.w, profile_id
        if w.slots == 1:
            store = w.identity_states[0]
            return canonical_id(store, pid) if store.claimed else pid
        for _ in range(16):
            store = w.identity_states[profile_slot(pid, w.slots)]
            nxt = store.get(b"r:" + pid.encode()) if store.claimed else None
            if nxt is None:
                break
            pid = nxt.decode()
        return pid

    def find_profile(self, profile_id: str) -> Profile | None:
        store, pid = self.locate(profile_id)
        return load_profile(store, pid)

    def lookup_by_identifier(self, query: dict[str, str]) -> Profile | None:
        for kind, prefix in KIND_PREFIX.items():
            if query.get(kind):
                key = f"{prefix}:{query[kind]}"
                slot = key_slot(key, self.w.slots)  # the identifier's hint lives there
                pid = served(self.w.identity_states[slot]).get(b"i:" + key.encode())
                return None if pid is None else self.find_profile(pid.decode())
        return None

    def owner_of(self, store: StateStore) -> str | None:
        """The web URL of the worker the group gave the store's input partition at the
        last rebalance (Faust shares every member's URL and partitions with all of
        them); None when that is this worker, or unknown."""
        w = self.w
        topic = (w.identity_topic if store.name == w.identity_states[0].name
                 else w.profiles_topic).get_topic_name()
        assignor: Any = w.app.assignor  # the concrete PartitionAssignor (type omits this)
        for url, topics in assignor.external_topics_metadata().items():
            if store.partition in topics.get(topic, ()):
                return None if url == str(w.app.conf.canonical_url) else url
        return None

    async def forwarded(self, web: Any, request: Any, exc: NotServedHere, suffix: str
                        ) -> Any:
        """The answer of the worker that owns the store this one lacks, or 503
        ``state_unavailable`` (this worker owns it and is still restoring it, a
        rebalance is under way, the owner is unreachable, or the request has been
        forwarded ``MAX_HOPS`` times already). Stopped at a profile's partition, the
        owner is asked for that profile (``/v1/profiles/<id><suffix>``), so it goes on
        from there."""
        hops = _int(request.headers.get(FORWARDED_HEADER), 0, MAX_HOPS)
        owner = self.owner_of(exc.store) if hops < MAX_HOPS else None
        if owner is None:
            return _unavailable(web, exc)
        path = request.path_qs
        if exc.profile_id is not None:
            path = f"/v1/profiles/{quote(exc.profile_id, safe='')}{suffix}"
            path += f"?{request.query_string}" if suffix and request.query_string else ""
        headers = {FORWARDED_HEADER: str(hops + 1)}
        if request.headers.get("Authorization"):
            headers["Authorization"] = request.headers["Authorization"]
        if request.headers.get("Content-Type"):
            headers["Content-Type"] = request.headers["Content-Type"]
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as client:
                answer = await client.request(request.method, owner.rstrip("/") + path,
                                              headers=headers, content=await request.read())
        except httpx.HTTPError as error:
            log.warning("profile API: the owner of %s (%s) did not answer: %s",
                        exc.store.label, owner, error)
            return _unavailable(web, exc)
        passed = {SERVED_BY_HEADER: answer.headers.get(SERVED_BY_HEADER, owner)}
        if "Retry-After" in answer.headers:  # the owner is restoring, say
            passed["Retry-After"] = answer.headers["Retry-After"]
        return web.bytes(answer.content, status=answer.status_code,
                         content_type=answer.headers.get("content-type", "application/json")
                         .split(";")[0],  # aiohttp takes the charset apart
                         headers=passed)

    async def guarded(self, web: Any, request: Any, fetch: Callable[[], Any],
                      suffix: str = "") -> Any:
        """``fetch()``'s answer; for a store not served here, its owner's."""
        try:
            return fetch()
        except NotServedHere as exc:
            return await self.forwarded(web, request, exc, suffix)


def install(w: Worker, activation: Activation) -> None:
    """The profile API's routes and ``/metrics`` on the worker's web server."""
    reader = ProfileReader(w)
    _install_reads(w, reader)
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
    page = w.app.page

    @page("/v1/profiles")
    async def profiles_by_identifier(web: Any, request: Any) -> Any:
        query = {k: v for k, v in request.query.items() if k in KIND_PREFIX}
        if not query:
            kinds = ", ".join(KIND_PREFIX)
            return _error(web, 400, "missing_identifier", f"give one of: {kinds}")

        def fetch() -> Any:
            profile = reader.lookup_by_identifier(query)
            return _not_found(web, str(query)) if profile is None else web.json(to_api(profile))

        return await reader.guarded(web, request, fetch)

    @page("/v1/profiles/{profile_id}")
    async def profile_by_id(web: Any, request: Any, profile_id: str) -> Any:
        def fetch() -> Any:
            profile = reader.find_profile(profile_id)
            return _not_found(web, profile_id) if profile is None else web.json(to_api(profile))

        return await reader.guarded(web, request, fetch)

    @page("/v1/profiles/{profile_id}/timeline")
    async def profile_timeline(web: Any, request: Any, profile_id: str) -> Any:
        offset = _int(request.query.get("offset"), 0, 1_000_000)
        limit = _int(request.query.get("limit"), 50, MAX_PAGE) or 1

        def fetch() -> Any:
            store, pid = reader.locate(profile_id)
            profile = load_profile(store, pid)
            if profile is None:
                return _not_found(web, profile_id)
            notes = read_notes(lambda prefix, n: store.scan(prefix, n, prefix), pid,
                               w.settings.profile_timeline_limit)
            return web.json(timeline_page(profile, offset, limit, notes))

        return await reader.guarded(web, request, fetch, "/timeline")

    _install_profile_views(w, reader)


def _install_profile_views(w: Worker, reader: ProfileReader) -> None:
    page = w.app.page

    @page("/v1/profiles/{profile_id}/merges")
    async def profile_merges(web: Any, request: Any, profile_id: str) -> Any:
        def fetch() -> Any:
            profile = reader.find_profile(profile_id)
            if profile is None:
                return _not_found(web, profile_id)
            store, _ = reader.locate(profile.profile_id)
            merges = [m.explain() for m in merge_history(store, profile.profile_id)]
            return web.json({"profile_id": profile.profile_id, "merges": merges})

        return await reader.guarded(web, request, fetch, "/merges")

    @page("/v1/profiles/{profile_id}/activation")
    async def profile_activation(web: Any, request: Any, profile_id: str) -> Any:
        def fetch() -> Any:
            profile = reader.find_profile(profile_id)
            if profile is None:
                return _not_found(web, profile_id)
            store, _ = reader.locate(profile.profile_id)
            return web.json(activation_view(store, profile.profile_id))

        return await reader.guarded(web, request, fetch, "/activation")


class Decide(View):
    """POST ``{"channel", "action_type", "purpose", "journey_id"?}``: would the stream
    allow that action for this profile now, and if not, which rule withholds it
    (streams/activation/ask.py). Read scope; nothing written or counted."""

    worker: Worker  # set on the subclass :func:`install` registers
    reader: ProfileReader
    activation: Activation

    async def post(self, request: Any, profile_id: str) -> Any:
        try:
            body = await request.json()
            Question.parse(body, None)  # the shape; the channel is checked against the
        except (ValueError, BadQuestion) as exc:  # definitions deciding (a JSON error
            return _error(self, 400, "invalid_question", str(exc))  # is a ValueError)
        try:
            return self.answer(profile_id, body)
        except NotServedHere as exc:
            return await self.reader.forwarded(self, request, exc, "/decide")

    def answer(self, profile_id: str, body: Any) -> Any:
        store, pid = self.reader.locate(profile_id)
        profile = load_profile(store, pid)
        definitions = self.activation.definitions_for(store, pid)
        if profile is None:
            return _not_found(self, profile_id)
        if definitions is None:
            return _error(self, 409, "no_definitions", "no definitions are published yet")
        try:
            question = Question.parse(body, definitions.all_channels)
        except BadQuestion as exc:
            return _error(self, 400, "invalid_question", str(exc))
        manual = self.worker.settings.activation_clock == "manual"
        now = clock_now(store, manual, datetime.now(UTC))
        state = load_state(store, pid)[0]
        return self.json(would_decide(profile, state, definitions, question, now))


class UndoMerge(View):
    """POST: ask the profile's owner to undo a merge (applied asynchronously: 202)."""

    worker: Worker  # set on the subclass :func:`install` registers
    reader: ProfileReader

    async def post(self, request: Any, profile_id: str, event_id: str) -> Any:
        try:
            store, pid = self.reader.locate(profile_id)
        except NotServedHere as exc:
            return await self.reader.forwarded(self, request, exc,
                                               f"/merges/{quote(event_id)}/undo")
        if not any(m.event_id == event_id for m in merge_history(store, pid)):
            return _error(self, 404, "merge_not_found",
                          f"no merge by event {event_id} on profile {pid}")
        await self.request_undo(pid, event_id)
        return self.json({"status": "accepted", "profile_id": pid, "event_id": event_id},
                         status=202)


    async def request_undo(self, pid: str, event_id: str) -> None:
        """Today's ``undo-merge`` command to the one identity partition, or the
        protocol's to the profile's slot (partitioned layout)."""
        w = self.worker
        if w.slots == 1:
            body = json.dumps({"profile_id": pid, "event_id": event_id}).encode()
            await w.identity_topic.send(key=pid.encode(), value=body,
                                        headers={COMMAND_HEADER: UNDO_MERGE})
            return
        await w.identity_topic.send(key=pid.encode(), value=encode(UndoMessage(pid, event_id)),
                                    partition=profile_slot(pid, w.slots),
                                    headers={COMMAND_HEADER: IDENTITY_PROTOCOL})


class Erasures(View):
    """POST (admin): erase a customer by one identifier (streams/core/erasure.py):
    ``{"email": ...}`` (or customer_id, phone, anonymous_id) and an optional
    ``"mode"``; applied asynchronously, 202 with the request id the audit record on
    ``ops.erasures`` will carry."""

    worker: Worker  # set on the subclass :func:`install` registers

    async def post(self, request: Any) -> Any:
        try:
            body = await request.json()
            ids = Identifiers.from_clear(*(body.get(k) for k in (
                "customer_id", "email", "phone", "anonymous_id")))
            keys = identifier_keys(ids)
            mode = body.get("mode", "suppress_with_delete")
            if len(keys) != 1 or mode not in MODES:
                raise ValueError("give exactly one identifier, and a mode of " + str(MODES))
        except (ValueError, AttributeError, TypeError) as exc:
            return _error(self, 400, "invalid_erasure", str(exc))
        erasure = Request(uuid.uuid4().hex, keys[0], mode,
                          str(body.get("requested_by", "api")), datetime.now(UTC))
        await self.worker.identity_topic.send(key=b"erase", value=erasure.to_json(),
                                              headers={COMMAND_HEADER: ERASE})
        return self.json({"status": "accepted", "request_id": erasure.request_id,
                          "mode": mode}, status=202)
