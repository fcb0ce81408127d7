"""The SDK assigns ``event_id`` once, before the first attempt, on every path.

Driven against a real HTTP server on 127.0.0.1 (not a mock transport) so a dropped
connection is a real one: the first attempt is answered 503 or the connection is
closed without an answer, the retry gets 200, and both must carry the same ids.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any

import pytest

from activation_client import AsyncClient, Client, InvalidEventError, RetryPolicy

DROP = "drop"
FAILURES = [DROP, 503]


@dataclass
class Seen:
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class Gateway:
    """What the stub answers (popped per request, then 200) and what it was sent."""

    url: str = ""
    answers: list[Any] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, seen: Seen) -> Any:
        with self.lock:
            self.seen.append(seen)
            return self.answers.pop(0) if self.answers else 200

    def ids(self) -> list[list[str]]:
        """The event ids each request carried, in order."""
        return [[e["event_id"] for e in s.body["events"]] if "events" in s.body
                else [s.body["event_id"]] for s in self.seen]


def _handler(state: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real gateway speaks it

        def do_POST(self) -> None:  # the name http.server dispatches to
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            answer = state.next_answer(Seen(self.path, body, dict(self.headers.items())))
            if answer == DROP:
                # The request was read, as if the gateway wrote the event: no answer.
                self.close_connection = True
                return
            payload = json.dumps({"status": "stub"}).encode()
            self.send_response(answer)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if answer == 503:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass  # keeps pytest output readable

    return Handler


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _raw(customer: str = "c1") -> dict[str, Any]:
    """An event as a caller might write it by hand: no event_id."""
    return {"event": "page_viewed", "timestamp": "2024-05-01T12:00:00+00:00",
            "customer_id": customer, "properties": {"path": "/"}}


def _client(gateway: Gateway, **kw: Any) -> Client:
    return Client(gateway.url, "key", sleep=lambda _: None,
                  retry=RetryPolicy(max_attempts=3, base_delay=0.01), timeout=5, **kw)


@pytest.mark.parametrize("failure", FAILURES)
def test_send_reuses_its_event_id_across_retries(gateway: Gateway, failure: Any) -> None:
    gateway.answers = [failure]
    event = _raw()
    with _client(gateway) as client:
        answer = client.send(event)
    assert len(gateway.seen) == 2
    (first,), (second,) = gateway.ids()
    assert first == second and len(first) == 36
    assert [s.headers["Idempotency-Key"] for s in gateway.seen] == [first, first]
    assert answer["event_id"] == first  # exposed even when the answer does not name it
    assert event == _raw()  # the caller's dict did not get the id


@pytest.mark.parametrize("failure", FAILURES)
def test_send_batch_reuses_event_ids_across_retries(gateway: Gateway, failure: Any) -> None:
    gateway.answers = [failure]
    events = [_raw("c1"), _raw("c2")]
    with _client(gateway) as client:
        answer = client.send_batch(events)
    first, second = gateway.ids()
    assert first == second and len(set(first)) == 2
    assert answer["event_ids"] == first
    assert all("event_id" not in e for e in events)


@pytest.mark.parametrize("failure", FAILURES)
def test_enqueue_reuses_event_ids_across_retries(gateway: Gateway, failure: Any) -> None:
    gateway.answers = [failure]
    client = _client(gateway, batch_size=10, flush_interval=60)
    ids = [client.enqueue(_raw("c1")), client.enqueue(_raw("c2"))]
    client.close()
    assert gateway.ids() == [ids, ids]
    assert [s.path for s in gateway.seen] == ["/v1/events/batch"] * 2
    assert client.failed == []


def test_given_event_ids_are_kept_and_any_mapping_works(gateway: Gateway) -> None:
    with _client(gateway) as client:
        client.send({**_raw(), "event_id": "order-o1"})
        client.send(MappingProxyType(_raw()))
        with pytest.raises(InvalidEventError):
            client.send({**_raw(), "event_id": ""})  # invalid, not silently replaced
    assert gateway.ids()[0] == ["order-o1"] and len(gateway.ids()[1][0]) == 36
    assert len(gateway.seen) == 2


def test_each_call_with_the_same_dict_is_a_new_event(gateway: Gateway) -> None:
    # Two calls are two events; only retries inside one call share the id.
    event = _raw()
    with _client(gateway) as client:
        client.send(event)
        client.send(event)
    (first,), (second,) = gateway.ids()
    assert first != second


async def test_async_client_reuses_event_ids_on_every_path(gateway: Gateway) -> None:
    gateway.answers = [DROP, 200, 503, 200, DROP, 200]
    client = AsyncClient(gateway.url, "key", timeout=5, batch_size=10, flush_interval=60,
                         retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    async with client:
        single = await client.send(_raw())
        batch = await client.send_batch([_raw("c2"), _raw("c3")])
        queued = await client.enqueue(_raw("c4"))
    ids = gateway.ids()
    assert ids == [[single["event_id"]]] * 2 + [batch["event_ids"]] * 2 + [[queued]] * 2
    assert gateway.seen[0].headers["Idempotency-Key"] == single["event_id"]
    assert client.failed == []
