"""Fixtures for the delivery executor against the real broker and registry, and a real
local HTTP receiver whose signature checks use the reference ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from standardwebhooks.webhooks import Webhook

from streams.activation.distribution import publish
from streams.serde import AvroSerde, Encoder
from streams.settings import REPO_ROOT, Settings
from streams.topics import (
    ACTION_COMMAND,
    DEAD_LETTER_RECORD,
    DELIVERY_DEAD_LETTER,
    DELIVERY_OUTCOME_RECORD,
    DELIVERY_OUTCOMES,
    action_topic,
    declared_topics,
    ensure_topics,
)
from tests.integration.core.harness import free_port, settings_env, wait_for

SECRET = "whsec_" + base64.b64encode(b"integration-signing-secret-32byt").decode()


@dataclass
class Receipt:
    path: str
    webhook_id: str
    at: datetime
    verified: bool


@dataclass
class Receiver:
    """A real aiohttp server on loopback, in its own thread. ``script[(path, id)]`` is a
    list of answers: a status, ``"hang"`` (no answer until the client gives up) or
    ``(status, {headers})``; the last one repeats. ``hang_paths`` hang every request."""

    port: int = 0
    script: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    hang_paths: set[str] = field(default_factory=set)
    receipts: list[Receipt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_s: float = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{path}"

    def got(self, path: str | None = None) -> list[str]:
        with self.lock:
            return [r.webhook_id for r in self.receipts if path in (None, r.path)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body, path = await request.read(), request.match_info["name"]
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
            verified = True
        except Exception:
            verified = False
        wid = request.headers.get("webhook-id", "")
        with self.lock:
            self.receipts.append(Receipt(path, wid, datetime.now(UTC), verified))
            answers = self.script.get((path, wid)) or [200]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if path in self.hang_paths or answer == "hang":
            await asyncio.sleep(3600)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status if verified else 401, text=f"answer {status}",
                            headers=headers)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(port=free_port())
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hooks/{name}", rec.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", rec.port).start()
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    yield rec
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@dataclass
class DeliveryStack:
    settings: Settings
    encode: Encoder  # ActionCommand, for actions.crm
    serde: AvroSerde
    tmp: Path

    def publish_destinations(self, destinations: dict[str, dict[str, Any]]) -> None:
        """The repository's definitions with these destinations instead of its own."""
        root = self.tmp / f"defs-{uuid.uuid4().hex[:6]}"
        subprocess.run(["cp", "-r", str(REPO_ROOT / "definitions"), str(root)], check=True)
        for old in (root / "destinations").glob("*.yaml"):
            old.unlink()
        for did, spec in destinations.items():
            (root / "destinations" / f"{did}.yaml").write_text(yaml.safe_dump(spec))
        publish(self.settings, root, "delivery-test")

    def command(self, action_id: str, channel: str = "crm",
                created_at: datetime | None = None) -> dict[str, Any]:
        return {"action_id": action_id, "channel": channel, "action_type": "update_crm",
                "profile_id": f"p-{action_id}", "identifiers": {
                    "customer_id": f"c-{action_id}", "email_sha256": None,
                    "phone_sha256": None, "anonymous_id": None},
                "payload": {"task": "call"}, "decision_id": f"d-{action_id}",
                "created_at": created_at or datetime.now(UTC)}

    def send(self, commands: list[dict[str, Any]]) -> None:
        producer = Producer({**self.settings.kafka_client_config(), "linger.ms": 5})
        topic = self.settings.topic(action_topic("crm"))
        for cmd in commands:
            producer.produce(topic, self.encode(cmd), cmd["profile_id"].encode())
            producer.poll(0)
        assert producer.flush(30) == 0

    def outcomes(self) -> list[dict[str, Any]]:
        return read_committed(self.settings, self.settings.topic(DELIVERY_OUTCOMES),
                              self.serde, self.settings.action_partitions)


def read_committed(settings: Settings, topic: str, serde: AvroSerde, partitions: int = 1
                   ) -> list[dict[str, Any]]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"r-{uuid.uuid4()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    out: list[dict[str, Any]] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        eof: set[int] = set()
        while len(eof) < partitions:
            msg = consumer.poll(2.0)
            if msg is None:
                break
            if msg.error() is not None:
                eof.add(int(msg.partition() or 0))
                continue
            out.append(serde.decode(msg.value())[1])
        return out
    finally:
        consumer.close()


@pytest.fixture
def delivery(stack_settings: Callable[..., Settings], admin: AdminClient, serde: AvroSerde,
             tmp_path: Path) -> DeliveryStack:
    settings = stack_settings(
        delivery_secrets={"TEST_SECRET": SECRET}, delivery_metrics_port=free_port(),
        delivery_retry_schedule=[0.3, 0.6, 1.0], delivery_retry_jitter=0)
    specs = {s.name: s for s in declared_topics(settings)}
    ensure_topics(admin, specs.values(), settings.kafka_replication_factor)
    encode = serde.encoder(f"{settings.topic(action_topic('crm'))}-value", ACTION_COMMAND,
                           register=True)
    serde.encoder(f"{settings.topic(DELIVERY_OUTCOMES)}-value", DELIVERY_OUTCOME_RECORD,
                  register=True)
    serde.encoder(f"{settings.topic(DELIVERY_DEAD_LETTER)}-value", DEAD_LETTER_RECORD,
                  register=True)
    return DeliveryStack(settings, encode, serde, tmp_path)


def executor_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    env["ACTIVATION_DELIVERY_SECRETS"] = json.dumps(
        {k: v.get_secret_value() for k, v in settings.delivery_secrets.items()})
    env["ACTIVATION_DELIVERY_RETRY_SCHEDULE"] = json.dumps(
        [d.total_seconds() for d in settings.delivery_retry_schedule])
    for name in ("delivery_retry_jitter", "delivery_metrics_port", "delivery_breaker_failures",
                 "action_partitions"):
        env[f"ACTIVATION_{name.upper()}"] = str(getattr(settings, name))
    env["ACTIVATION_DELIVERY_BREAKER_COOLDOWN"] = str(
        settings.delivery_breaker_cooldown.total_seconds())
    return env


class ExecutorProcess:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log = settings, log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.delivery", "run"], cwd=REPO_ROOT,
            env=executor_env(settings), stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            raise AssertionError(f"executor exited {self.proc.returncode}; log: {self.log}")
        try:
            url = f"http://127.0.0.1:{self.settings.delivery_metrics_port}/readyz"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        import httpx

        url = f"http://127.0.0.1:{self.settings.delivery_metrics_port}/metrics"
        return httpx.get(url, timeout=5).text

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def executors(tmp_path: Path) -> Iterator[Callable[..., ExecutorProcess]]:
    started: list[ExecutorProcess] = []

    def make(settings: Settings, **overrides: Any) -> ExecutorProcess:
        if overrides:
            settings = settings.model_copy(update=overrides)
        ex = ExecutorProcess(settings, tmp_path / f"executor-{len(started)}.log")
        started.append(ex)
        wait_for(ex.ready, 90, f"executor ready (log: {ex.log})")
        return ex

    yield make
    for ex in started:
        ex.stop()
