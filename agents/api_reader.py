"""Where the profile API finds a profile: this worker's stores, or the worker that
owns them.

A request for a profile whose partition another worker owns is forwarded to that
worker once (:meth:`ProfileReader.forwarded`); while a store is being restored the
answer is 503 ``state_unavailable`` with ``Retry-After``. The answer helpers here
give every view of agents/api.py and agents/api_commands.py the same error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from agents.context import Worker
from streams.core.identity import KIND_PREFIX
from streams.core.pipeline import canonical_id, load_profile
from streams.core.profile import Profile
from streams.core.routing import key_slot, partition_of, profile_slot
from tables.state import StateStore

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Activation-Forwarded-By"
SERVED_BY_HEADER = "X-Activation-Served-By"
FORWARD_TIMEOUT_S = 5.0
MAX_HOPS = 3  # identity owner, then a partition's, then one merge further
MAX_PAGE = 200


def error_answer(web: Any, status: int, code: str, message: str) -> Any:
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


def unavailable(web: Any, exc: NotServedHere) -> Any:
    response = error_answer(web, 503, "state_unavailable", str(exc))
    response.headers["Retry-After"] = "1"
    return response


def not_found(web: Any, what: str) -> Any:
    return error_answer(web, 404, "profile_not_found", f"no profile for {what}")


def int_param(value: str | None, default: int, high: int) -> int:
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
        hops = int_param(request.headers.get(FORWARDED_HEADER), 0, MAX_HOPS)
        owner = self.owner_of(exc.store) if hops < MAX_HOPS else None
        if owner is None:
            return unavailable(web, exc)
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
            return unavailable(web, exc)
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
