"""The gateway against the real broker and registry: what is accepted is on the topic."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ingest.auth import EVENTS_WRITE, PROFILES_READ, KeyRecord, hash_key, new_key
from ingest.keystore import KeyWriter
from streams.records import sha256_hex
from streams.serde import AvroSerde
from streams.settings import Settings
from tests.integration.ingest.conftest import Running, consume, wait_for


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _purchase(**extra: Any) -> dict[str, Any]:
    return {"event": "purchase_completed", "timestamp": _now(), "customer_id": "cust-1",
            "email": " Ann@Example.com ",
            "properties": {"order_id": "o-1", "order_value": "149.99", "currency": "EUR",
                           "product_ids": ["p1"], "coupon": "SPRING"}, **extra}


async def test_accepted_event_is_on_the_topic(gateway: Running, serde: AvroSerde) -> None:
    response = await gateway.client.post("/v1/events", json=_purchase(), headers=gateway.auth())
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    assert response.headers["X-Request-Id"]
    [(key, record)] = consume(gateway.settings, serde, 1)
    assert key == b"cid:cust-1"
    assert record["event_id"] == event_id
    assert record["source"] == "http:bootstrap"
    assert record["identifiers"]["email_sha256"] == sha256_hex("ann@example.com")
    assert record["payload"]["order_value"] == Decimal("149.9900")
    assert record["properties"] == {"coupon": "SPRING"}


async def test_idempotent_resend_is_answered_once_and_written_once(
    gateway: Running, serde: AvroSerde
) -> None:
    headers = {**gateway.auth(), "Idempotency-Key": f"idem-{uuid.uuid4()}"}
    first = await gateway.client.post("/v1/events", json=_purchase(), headers=headers)
    again = await gateway.client.post("/v1/events", json=_purchase(), headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    body = _purchase(event_id="evt-fixed-1")
    for _ in range(2):
        assert (await gateway.client.post("/v1/events", json=body,
                                          headers=gateway.auth())).status_code == 200
    ids = [r["event_id"] for _, r in consume(gateway.settings, serde, 2)]
    assert sorted(ids) == sorted([first.json()["event_id"], "evt-fixed-1"])


async def test_error_answers(gateway: Running) -> None:
    post = gateway.client.post
    bad = await post("/v1/events", headers=gateway.auth(),
                     json={"event": "purchase_completed", "timestamp": "2024-01-01T00:00:00",
                           "properties": {"order_value": "x"}})
    assert bad.status_code == 400
    paths = {p["path"] for p in bad.json()["problems"]}
    assert {"$.timestamp", "$", "$.properties.order_value", "$.properties.order_id"} <= paths
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    late = await post("/v1/events", headers=gateway.auth(), json=_purchase(timestamp=future))
    assert late.status_code == 400
    assert (await post("/v1/events", json=_purchase())).status_code == 401
    assert (await post("/v1/events", json=_purchase(),
                       headers=gateway.auth("ak_000000000000_nope-nope-nope-nope-nope"))
            ).status_code == 401
    huge = _purchase(properties={"blob": "x" * 40_000})
    assert (await post("/v1/events", json=huge, headers=gateway.auth())).status_code == 413
    many = {"events": [_purchase()] * 501}
    assert (await post("/v1/events/batch", json=many, headers=gateway.auth())).status_code == 413
    text = await post("/v1/events", content=b"event=x",
                      headers={**gateway.auth(), "Content-Type": "text/plain"})
    assert text.status_code == 415


async def test_scopes_and_revocation_reach_the_gateway(gateway: Running) -> None:
    settings = gateway.settings
    pepper = settings.api_key_pepper.get_secret_value()
    key_id, key = new_key()
    writer = KeyWriter(settings)
    writer.put(KeyRecord(key_id, hash_key(key, pepper), (PROFILES_READ,)))

    async def status() -> int:
        answer = await gateway.client.post("/v1/events", json=_purchase(),
                                           headers=gateway.auth(key))
        return answer.status_code

    await wait_for(lambda: _is(status, 403))
    writer.put(KeyRecord(key_id, hash_key(key, pepper), (EVENTS_WRITE,)))
    await wait_for(lambda: _is(status, 200))
    writer.put(KeyRecord(key_id, hash_key(key, pepper), (EVENTS_WRITE,), revoked=True))
    await wait_for(lambda: _is(status, 401))
    metrics = await gateway.client.get("/metrics", headers=gateway.auth())
    assert metrics.status_code == 200
    assert 'ingest_http_requests_total{endpoint="/v1/events",status="403"}' in metrics.text


async def _is(call: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await call() == expected


async def test_rate_limit_answers_429(
    start_gateway: Callable[..., Awaitable[Running]], gw_settings: Callable[..., Settings]
) -> None:
    running = await start_gateway(gw_settings(gateway_rate_limit_per_second=0.5,
                                              gateway_rate_limit_burst=2))
    codes = [(await running.client.post("/v1/events", json=_purchase(),
                                        headers=running.auth())) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert int(codes[2].headers["Retry-After"]) >= 1


async def test_batch_is_per_event_and_validation_all_or_nothing(
    gateway: Running, serde: AvroSerde
) -> None:
    events = [_purchase(event_id=f"b-{i}", customer_id=f"c{i}") for i in range(3)]
    bad = await gateway.client.post("/v1/events/batch", headers=gateway.auth(), json={
        "events": [*events, {"event": "x", "timestamp": "nope"}]})
    assert bad.status_code == 400
    assert {p["path"] for p in bad.json()["problems"]} == {"$.events[3].timestamp",
                                                          "$.events[3]"}
    ok = await gateway.client.post("/v1/events/batch", headers=gateway.auth(),
                                   json={"events": events})
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 3
    again = await gateway.client.post("/v1/events/batch", headers=gateway.auth(),
                                      json={"events": events[:2]})
    assert [r.get("duplicate") for r in again.json()["results"]] == [True, True]
    records = consume(gateway.settings, serde, 3)
    assert sorted(r["event_id"] for _, r in records) == ["b-0", "b-1", "b-2"]


async def test_segment_calls(gateway: Running, serde: AvroSerde) -> None:
    basic = base64.b64encode(b"local-test-admin-key:").decode()
    headers = {"Authorization": f"Basic {basic}"}
    track = await gateway.client.post("/v1/track", headers=headers, json={
        "event": "Order Completed", "userId": "u1", "messageId": "seg-1",
        "timestamp": _now(), "properties": {"revenue": 10.5}, "context": {"ip": "1.2.3.4"}})
    assert track.status_code == 200, track.text
    assert track.json()["success"] is True
    identify = await gateway.client.post("/v1/identify", headers=headers, json={
        "anonymousId": "a1", "messageId": "seg-2", "originalTimestamp": _now(),
        "traits": {"email": "x@y.io", "plan": "pro"}})
    assert identify.status_code == 200, identify.text
    batch = await gateway.client.post("/v1/batch", headers=headers, json={"batch": [
        {"type": "track", "event": "Signed Up", "userId": "u2", "messageId": "seg-3"},
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "seg-1"}]})
    assert batch.status_code == 200, batch.text
    records = {r["event_id"]: r for _, r in consume(gateway.settings, serde, 3)}
    assert set(records) == {"seg-1", "seg-2", "seg-3"}
    assert records["seg-1"]["event_name"] == "order_completed"
    assert records["seg-2"]["identifiers"]["email_sha256"] == sha256_hex("x@y.io")
    assert records["seg-2"]["properties"] == {"plan": "pro"}


async def test_health_readiness_and_openapi(gateway: Running) -> None:
    assert (await gateway.client.get("/healthz")).status_code == 200
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert (await gateway.client.get("/openapi.json")).status_code == 401
    spec = (await gateway.client.get("/openapi.json", headers=gateway.auth())).json()
    assert "/v1/events/batch" in spec["paths"]
