"""A testing source and sink for the executor (Bytewax style) and a real local receiver.

The executor's asyncio side is driven for real: commands go in as the Kafka thread would
hand them over, requests go to a real aiohttp server on loopback, and what it stages for
commit lands in :class:`MemoryStaging`. The Avro codec and Kafka are the integration
tests' business (tests/integration/delivery/)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from streams.activation.definitions import DefinitionSet
from streams.activation.governance_rules import GovernanceRules
from streams.delivery.destinations import Destination
from streams.delivery.executor import Executor
from streams.delivery.ledger import Ledger
from streams.delivery.metrics import DeliveryMetrics
from streams.delivery.types import Incoming, Record, Topics
from streams.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
TOPICS = Topics("ledger", "outcomes", "dead", "control", "profiles", 4)


class JsonCodec:
    def command(self, value: bytes) -> dict[str, Any]:
        doc = json.loads(value)
        doc["created_at"] = datetime.fromisoformat(doc["created_at"])
        return dict(doc)

    def outcome(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record, default=str).encode()

    def dead_letter(self, record: dict[str, Any]) -> bytes:
        return json.dumps({k: v.decode() if isinstance(v, bytes) else v
                           for k, v in record.items()}, default=str).encode()


@dataclass
class MemoryStaging:
    records: list[Record] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    calls: int = 0

    def stage(self, topic: str, partition: int, records: list[Record],
              offset: int | None) -> None:
        self.calls += 1
        self.records.extend(records)
        if offset is not None:
            self.offsets[(topic, partition)] = offset

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v, _, _ in self.records if t == topic]


@dataclass
class Receiver:
    """Answers from a script per action id (default 200); records what it verified."""

    script: dict[str, list[int]] = field(default_factory=dict)
    got: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    delay_s: float = 0.0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(SECRET).verify(body, dict(request.headers))  # raises: a 500 in the test
        wid = request.headers["webhook-id"]
        self.got.append(wid)
        self.bodies.append(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answers = self.script.get(wid) or [200]
        status = answers.pop(0) if len(answers) > 1 else answers[0]
        return web.Response(status=status, text=f"answer {status}",
                            headers={"Retry-After": "0"} if status == 429 else {})


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[], Receiver]]:
    runners: list[web.AppRunner] = []

    async def start() -> Receiver:
        rec = Receiver()
        app = web.Application()
        app.router.add_post("/hook", rec.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        rec.url = f"http://127.0.0.1:{port}/hook"
        runners.append(runner)
        return rec

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


def destination(did: str, url: str, **kw: Any) -> Destination:
    return Destination.model_validate({"id": did, "url": url, "signing_secrets": ["S"],
                                       "routes": [{"channel": "crm"}], **kw})


def definitions(*dests: Destination) -> DefinitionSet:
    return DefinitionSet(version="t", audiences={}, journeys={}, governance=GovernanceRules(),
                         destinations={d.id: d for d in dests})


def make_executor(settings: Settings, defs: DefinitionSet, disabled: set[str] | None = None
                  ) -> tuple[Executor, MemoryStaging]:
    staging = MemoryStaging()
    ex = Executor(settings, lambda: defs, lambda d: d in (disabled or set()), JsonCodec(),
                  TOPICS, DeliveryMetrics(CollectorRegistry()))
    ex.bind(staging)
    ex.assigned("actions.crm", 0, Ledger())
    return ex, staging


def command_record(action_id: str, offset: int, headers: dict[str, bytes] | None = None
                   ) -> Incoming:
    cmd = {"action_id": action_id, "channel": "crm", "action_type": "update_crm",
           "profile_id": f"p-{action_id}", "payload": {"task": "call"},
           "created_at": datetime.now(UTC).isoformat()}
    return Incoming("actions.crm", 0, offset, cmd["profile_id"].encode(),
                    json.dumps(cmd).encode(), headers or {})


async def settled(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
