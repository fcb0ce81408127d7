"""SDK retry rules and batching against an in-memory HTTP transport (no gateway needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from activation_client import (
    AsyncClient,
    Client,
    InvalidEventError,
    RejectedError,
    RetriesExhaustedError,
    RetryPolicy,
    make_event,
)
from activation_client.retry import parse_retry_after


def _event(**kw: Any) -> dict[str, Any]:
    return make_event("page_viewed", datetime.now(UTC), customer_id="c1", **kw)


class Script:
    """Answers requests with a list of (status, headers) or exceptions, recording bodies."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.bodies: list[Any] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        self.headers.append(request.headers)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer
        return httpx.Response(status, headers=headers, json={"status": "x", "accepted": 1})


def _client(script: Script, sleeps: list[float], **kw: Any) -> Client:
    return Client("http://gw", "key", transport=httpx.MockTransport(script),
                  sleep=sleeps.append, retry=RetryPolicy(max_attempts=4, base_delay=0.1), **kw)


def test_make_event_validates_and_sets_event_id() -> None:
    event = _event()
    assert len(event["event_id"]) == 36
    with pytest.raises(InvalidEventError) as info:
        make_event("Bad Name", datetime.now(), properties={"x": object()})  # noqa: DTZ005
    assert len(info.value.problems) >= 2


def test_retries_5xx_429_and_connection_errors_with_same_event_id() -> None:
    script = Script((503, {}), httpx.ConnectError("refused"), (429, {"Retry-After": "3"}),
                    (200, {}))
    sleeps: list[float] = []
    assert _client(script, sleeps).send(_event())["status"] == "x"
    assert len({b["event_id"] for b in script.bodies}) == 1
    assert {h["Idempotency-Key"] for h in script.headers} == {script.bodies[0]["event_id"]}
    assert sleeps[2] == 3.0  # Retry-After wins over backoff
    assert all(0 <= s <= 0.4 for s in sleeps[:2])


@pytest.mark.parametrize("status", [400, 401, 403, 413, 415])
def test_never_retries_client_errors(status: int) -> None:
    script = Script((status, {}))
    sleeps: list[float] = []
    with pytest.raises(RejectedError) as info:
        _client(script, sleeps).send(_event())
    assert info.value.status == status and len(script.bodies) == 1 and sleeps == []


def test_gives_up_after_max_attempts() -> None:
    script = Script((500, {}))
    with pytest.raises(RetriesExhaustedError):
        _client(script, []).send(_event())
    assert len(script.bodies) == 4


def test_background_batching_flushes_on_close() -> None:
    script = Script((200, {}))
    client = _client(script, [], batch_size=3, flush_interval=60)
    for _ in range(5):
        client.enqueue(_event())
    client.close()
    assert [len(b["events"]) for b in script.bodies] == [3, 2]


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


async def test_async_client_batches_and_retries() -> None:
    script = Script((502, {"Retry-After": "0"}), (200, {}))

    async def handler(request: httpx.Request) -> httpx.Response:
        return script(request)

    client = AsyncClient("http://gw", "key", transport=httpx.MockTransport(handler),
                         batch_size=2, retry=RetryPolicy(base_delay=0.001))
    async with client:
        for _ in range(3):
            await client.enqueue(_event())
    assert [len(b["events"]) for b in script.bodies] == [2, 2, 1]
    assert script.bodies[0] == script.bodies[1]  # the retry resent the same events
    assert client.failed == []


def test_chunks_respect_count_and_bytes() -> None:
    from activation_client.events import chunks

    small = [_event() for _ in range(5)]
    assert [len(c) for c in chunks(small, 2)] == [2, 2, 1]
    big = [_event(properties={"blob": "x" * 20_000}) for _ in range(4)]
    assert [len(c) for c in chunks(big, 100, max_bytes=50_000)] == [2, 2]
