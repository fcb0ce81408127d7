"""A console with fakes behind it: keys in a table, a worker API answered by an httpx
mock transport, operations that only record what they were asked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from console.access import Keys
from console.app import Console
from console.deadletters import DELIVERY, STREAM, DeadLetterIndex, Redriven
from console.definitions import History
from console.live import LiveHub
from console.metrics import ConsoleMetrics
from console.sessions import SessionStore
from console.stats import Stats
from console.worker_api import WorkerApi
from ingest.auth import ADMIN, PROFILES_READ, KeyRecord, KeyTable, hash_key
from streams.delivery.control import Control
from streams.settings import Settings, load_settings

PEPPER = "unit-pepper"
ADMIN_ID, READ_ID, WRITE_ID = "admin0000001", "read00000001", "write0000001"
ADMIN_KEY, READ_KEY, WRITE_KEY = (f"ak_{i}_{'s' * 24}{n}" for n, i in
                                  enumerate((ADMIN_ID, READ_ID, WRITE_ID)))
PID = "p-0123456789abcdef0123"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def key_table() -> KeyTable:
    table = KeyTable(PEPPER)
    for key_id, key, scopes in ((ADMIN_ID, ADMIN_KEY, (ADMIN,)),
                                (READ_ID, READ_KEY, (PROFILES_READ,)),
                                (WRITE_ID, WRITE_KEY, ("events:write",))):
        table.apply(KeyRecord(key_id, hash_key(key, PEPPER), scopes, name=f"{key_id[:5]} key"),
                    key_id)
    return table


@dataclass
class FakeOperations:
    redriven: list[tuple[str, list[int]]] = field(default_factory=list)
    enabled: list[tuple[str, str]] = field(default_factory=list)

    def redrive(self, kind: str, offsets: list[int]) -> Redriven:
        self.redriven.append((kind, offsets))
        return Redriven(len(offsets), 0)

    def enable(self, destination: str, by: str) -> None:
        self.enabled.append((destination, by))


TIMELINE = [
    {"event_id": "d-1", "event_name": "decision.withheld", "kind": "decision",
     "time": NOW.isoformat(), "summary": "email send_email withheld: consent (no consent)",
     "late": False, "detail": {"channel": "email", "rule": "consent",
                               "reason": "no marketing:email consent",
                               "journey_id": "churn_prevention",
                               "step_id": "reminder_email", "definitions_version": "abc"}},
    {"event_id": "e-1", "event_name": "subscription_started", "kind": "event",
     "time": (NOW - timedelta(minutes=1)).isoformat(), "summary": "plan pro",
     "late": False},
]


def worker_answers(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if request.headers.get("Authorization") not in (f"Bearer {ADMIN_KEY}",
                                                     f"Bearer {READ_KEY}"):
        return httpx.Response(401, json={"error": {"message": "unknown key"}})
    if path == "/v1/profiles":
        if request.url.params.get("customer_id") == "cust_1":
            return httpx.Response(200, json=profile_body())
        return httpx.Response(404, json={"error": {"message": "no profile"}})
    if path == f"/v1/profiles/{PID}":
        return httpx.Response(200, json=profile_body())
    if path == f"/v1/profiles/{PID}/timeline":
        return httpx.Response(200, json={"profile_id": PID, "items": TIMELINE,
                                         "next_offset": None, "total": 2})
    if path == f"/v1/profiles/{PID}/merges":
        return httpx.Response(200, json={"profile_id": PID, "merges": [
            {"event_id": "m-1", "merged_at": NOW.isoformat(), "winner": PID,
             "loser": "p-ffff", "linking_keys": ["em:x"], "moved_keys": ["em:x"]}]})
    if path == f"/v1/profiles/{PID}/activation":
        return httpx.Response(200, json={"profile_id": PID, "audiences": ["contract_ending"],
                                         "journeys": {}, "last_exits": {}, "held": [],
                                         "next_timer": None, "definitions_version": "abc"})
    if path.endswith("/undo") and request.method == "POST":
        if request.headers["Authorization"] != f"Bearer {ADMIN_KEY}":
            return httpx.Response(403, json={"error": {"message": "forbidden"}})
        return httpx.Response(202, json={"status": "accepted"})
    if path == "/metrics":
        return httpx.Response(200, text=METRICS)
    return httpx.Response(404, json={"error": {"message": "not found"}})


STEP = 'activation_journey_step_decisions_total{journey="churn_prevention",step="reminder_email",'
METRICS = f"""# TYPE activation_journey_enrollments_total counter
activation_journey_enrollments_total{{journey="churn_prevention"}} 4.0
# TYPE activation_journey_step_decisions_total counter
{STEP}outcome="sent"}} 3.0
{STEP}outcome="withheld"}} 1.0
# TYPE activation_suppressions_total counter
activation_suppressions_total{{rule="consent"}} 1.0
"""


def profile_body() -> dict[str, Any]:
    return {"profile_id": PID, "identifiers": {"customer_id": ["cust_1"]},
            "traits": {"timezone": "Europe/Berlin"}, "consent": {"marketing:email": "DENIED"},
            "subscriptions": {}, "aggregates": {"order_count": 0, "lifetime_value": {},
                                                "last_purchase": None},
            "last_event_time": NOW.isoformat()}


def fake_console(settings: Settings | None = None, **overrides: Any) -> Console:
    settings = settings or load_settings(api_key_pepper=PEPPER)
    http = httpx.AsyncClient(transport=httpx.MockTransport(worker_answers))
    registry = CollectorRegistry()
    serde: Any = None  # the indexes decode only in apply(); tests do not call it
    console = Console(
        settings=settings, keys=Keys(key_table()),
        sessions=SessionStore(settings.console_session_idle),
        api=WorkerApi(["http://worker.test"], http), hub=LiveHub(), history=History(),
        stats=Stats(), stream_letters=DeadLetterIndex(STREAM, serde),
        delivery_letters=DeadLetterIndex(DELIVERY, serde), control=Control(),
        operations=FakeOperations(), metrics=ConsoleMetrics(registry),
        registry=registry, http=http)
    for name, value in overrides.items():
        setattr(console, name, value)
    return console


def dumps(value: Any) -> str:
    return json.dumps(value)
