"""A stream worker in a subprocess, and helpers to feed it and read what it wrote."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.records import Envelope
from streams.serde import AvroSerde
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[3]


RESTORING_WAIT_S = 60.0  # how long Worker.get/post wait out a store being claimed


def _error_code(answer: httpx.Response) -> str | None:
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.2)


API_KEY = "core-tests-key"  # ensured as an all-scope (admin) key by the worker's key store
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def settings_env(settings: Settings) -> dict[str, str]:
    """The ACTIVATION_* variables that give a subprocess these settings."""
    fields = ("kafka_bootstrap_servers", "schema_registry_url", "topic_prefix", "app_id",
              "ingest_partitions", "data_dir", "worker_web_port", "profile_timeline_limit",
              "activation_clock", "identity_partitions")
    env = {f"ACTIVATION_{f.upper()}": str(getattr(settings, f)) for f in fields}
    env["ACTIVATION_BOOTSTRAP_API_KEY"] = API_KEY
    env["ACTIVATION_DEDUP_WINDOW"] = f"PT{settings.dedup_window.total_seconds():.3f}S"
    env["ACTIVATION_ORDERING_WINDOW"] = f"PT{settings.ordering_window.total_seconds():.3f}S"
    return env


class Worker:
    """``python -m streams.app worker`` with the test's settings; killable."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{settings.worker_web_port}"

    def start(self) -> Worker:
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.app", "worker", "-l", "info",
             "--web-port", str(self.settings.worker_web_port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ready, 90, f"worker ready (log: {self.log_path})")
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}; log: {self.log_path}")
        try:
            # Open without a key; ready once the worker can check API keys.
            return httpx.get(self.base + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> httpx.Response:
        return self._honouring_retry_after("GET", path)

    def post(self, path: str) -> httpx.Response:
        return self._honouring_retry_after("POST", path)

    def _honouring_retry_after(self, method: str, path: str) -> httpx.Response:
        """The answer, as a client that honours ``Retry-After`` gets it: a 503
        ``state_unavailable`` (a store this worker was assigned is still being claimed
        from its changelog, 1 to 4 s each on a busy machine, or a rebalance is under
        way) is asked again, for up to RESTORING_WAIT_S. The request was refused
        before anything was done, so asking again is safe for a POST too."""
        deadline = time.monotonic() + RESTORING_WAIT_S
        while True:
            answer = httpx.request(method, self.base + path, headers=AUTH, timeout=10)
            if answer.status_code != 503 or time.monotonic() >= deadline \
                    or _error_code(answer) != "state_unavailable":
                return answer
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]],
            partition: int | None = None, compression: str = "none") -> None:
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True,
                         "linger.ms": 20, "compression.type": compression})
    for key, value in records:
        if partition is None:
            producer.produce(topic, key=key, value=value)
        else:
            producer.produce(topic, key=key, value=value, partition=partition)
        producer.poll(0)
    assert producer.flush(60) == 0


def encode_all(encode: Callable[[dict[str, Any]], bytes],
               events: Iterable[Envelope]) -> list[tuple[bytes | None, bytes]]:
    return [(e.key.encode(), encode(e.to_avro())) for e in events]


def read_all(settings: Settings, serde: AvroSerde, topic: str, expected: int,
             deadline_s: float = 60) -> list[dict[str, Any]]:
    """Decode every record of a topic from the beginning, waiting for ``expected`` of them."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[dict[str, Any]] = []
    end = time.monotonic() + deadline_s
    try:
        while len(out) < expected and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(serde.decode(msg.value())[1])
    finally:
        consumer.close()
    return out


def as_json(response: httpx.Response) -> Any:
    return json.loads(response.text)
