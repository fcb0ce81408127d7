"""The workers' profile API, called with the signed-in operator's key.

Any worker answers for any profile (it forwards to the owner), so the console asks the
first configured one; a profile whose partition is being restored answers 503, which
the page shows as "retry shortly". The journey funnel reads every worker's
``/metrics`` (admin scope), since each counts only what it decided itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from console.errors import UpstreamError

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    def message(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("message")) if isinstance(error, dict) else f"HTTP {self.status}"


class WorkerApi:
    """Thin async client; ``auth`` is the operator's Authorization header."""

    def __init__(self, urls: list[str], client: httpx.AsyncClient) -> None:
        if not urls:
            raise ValueError("at least one worker URL is needed")
        self.urls, self._client = urls, client

    async def _call(self, method: str, url: str, auth: dict[str, str],
                    params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._client.request(method, url, headers=auth, params=params,
                                              timeout=TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the worker at {url.split('/v1')[0]} did not answer: "
                                f"{type(exc).__name__} {exc}", 503) from exc

    async def _json(self, method: str, path: str, auth: dict[str, str],
                    params: dict[str, Any] | None = None) -> Answer:
        response = await self._call(method, self.urls[0] + path, auth, params)
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"message": response.text[:300]}}
        if response.status_code in (401, 403):  # the key changed since sign-in
            raise UpstreamError(Answer(response.status_code, body).message(),
                                response.status_code)
        return Answer(response.status_code, body)

    async def find(self, auth: dict[str, str], query: dict[str, str]) -> Answer:
        return await self._json("GET", "/v1/profiles", auth, query)

    async def profile(self, auth: dict[str, str], profile_id: str) -> Answer:
        return await self._json("GET", f"/v1/profiles/{quote(profile_id, safe='')}", auth)

    async def timeline(self, auth: dict[str, str], profile_id: str, offset: int,
                       limit: int) -> Answer:
        return await self._json("GET", f"/v1/profiles/{quote(profile_id, safe='')}/timeline",
                                auth, {"offset": offset, "limit": limit})

    async def merges(self, auth: dict[str, str], profile_id: str) -> Answer:
        return await self._json("GET", f"/v1/profiles/{quote(profile_id, safe='')}/merges",
                                auth)

    async def activation(self, auth: dict[str, str], profile_id: str) -> Answer:
        return await self._json(
            "GET", f"/v1/profiles/{quote(profile_id, safe='')}/activation", auth)

    async def undo_merge(self, auth: dict[str, str], profile_id: str, event_id: str
                         ) -> Answer:
        path = (f"/v1/profiles/{quote(profile_id, safe='')}/merges/"
                f"{quote(event_id, safe='')}/undo")
        return await self._json("POST", path, auth)

    async def metrics(self, auth: dict[str, str]) -> list[tuple[str, str | None]]:
        """(worker URL, its /metrics text, or None when it refused or did not answer)."""
        out: list[tuple[str, str | None]] = []
        for url in self.urls:
            try:
                response = await self._call("GET", url + "/metrics", auth)
            except UpstreamError as exc:
                log.warning("metrics of %s: %s", url, exc)
                out.append((url, None))
                continue
            out.append((url, response.text if response.status_code == 200 else None))
        return out
