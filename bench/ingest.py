"""Ingestion benchmark: gateway throughput and latency vs a raw Kafka producer, same run.

    .venv/bin/python bench/ingest.py [--events 5000] [--batch-events 20000] [--concurrency 32]
                                     [--profile DIR]

Starts ``python -m ingest`` as its own process on a free loopback port against
the Kafka and registry of the current settings (ACTIVATION_*), with a unique
topic prefix (``bench<id>.``), then drives it from this process (aiohttp
client): single events, then batches of 100. Finally a raw confluent-kafka
producer (same idempotent acks=all config) writes the same Avro events straight
to Kafka. Prints accepted events/s, p50/p99 latency and the gateway/raw ratio.

It also prints the gateway process's CPU time per request (single) and per
event (batch), all its threads included (Linux ``/proc``): on a shared, noisy
host that figure moves far less than throughput, so it is the one to compare
between two versions. ``--profile DIR`` records each phase with py-spy
(``DIR/single.txt``, ``DIR/batch.txt``: collapsed stacks for flamegraph.pl or
speedscope).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.avro_check import PayloadRules  # noqa: E402
from ingest.validation import Policy, validate_event  # noqa: E402
from streams.schemas import SchemaCatalog  # noqa: E402
from streams.serde import AvroSerde, RegistryClient  # noqa: E402
from streams.settings import Settings, load_settings  # noqa: E402
from streams.topics import ENVELOPE, declared_topics, ensure_topics  # noqa: E402

KEY = "bench-admin-key"


def event(i: int) -> dict[str, Any]:
    return {"event": "purchase_completed", "timestamp": datetime.now(UTC).isoformat(),
            "event_id": str(uuid.uuid4()), "customer_id": f"cust-{i % 5000}",
            "properties": {"order_id": f"o-{i}", "order_value": "49.90", "currency": "EUR",
                           "product_ids": ["p1", "p2"], "channel": "web"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items()}
    env.update({"ACTIVATION_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "ACTIVATION_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
                "ACTIVATION_TOPIC_PREFIX": settings.topic_prefix,
                "ACTIVATION_BOOTSTRAP_API_KEY": KEY, "ACTIVATION_GATEWAY_PORT": str(port),
                "ACTIVATION_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000000",
                "ACTIVATION_GATEWAY_RATE_LIMIT_BURST": "1000000000",
                "ACTIVATION_LOG_LEVEL": "WARNING"})
    return subprocess.Popen([sys.executable, "-m", "ingest"], cwd=REPO, env=env)  # noqa: S603


async def wait_ready(url: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            try:
                async with session.get(f"{url}/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("gateway not ready")


async def drive(url: str, path: str, bodies: list[Any], concurrency: int) -> dict[str, float]:
    """Send every body with ``concurrency`` workers; latency per request."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal failures
            while queue:
                data = json.dumps(queue.pop()).encode()
                started = time.perf_counter()
                async with session.post(url + path, data=data) as answer:
                    await answer.read()
                    if answer.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "failures": failures, "seconds": elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def raw_producer(settings: Settings, serde: AvroSerde, count: int) -> float:
    """Events/s of confluent-kafka writing the same envelopes straight to Kafka."""
    topic = declared_topics(settings)[0]
    encode = serde.encoder(topic.value_subject, ENVELOPE)
    policy = Policy(PayloadRules.from_catalog(serde.catalog), settings.gateway_max_future_skew,
                    "accept")
    now = datetime.now(UTC)
    frames = []
    for i in range(count):
        env = validate_event(event(i), policy, now, "kafka:bench")
        frames.append((env.key.encode(), encode(env.to_avro())))
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True,
                         "acks": "all", "linger.ms": 2, "compression.type": "lz4"})
    errors = 0

    def on_delivery(err: object, _msg: object) -> None:
        nonlocal errors
        errors += err is not None

    started = time.perf_counter()
    for key, value in frames:
        while True:
            try:
                producer.produce(topic.name, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"raw producer: {errors} deliveries failed")
    return count / elapsed


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """Record ``pid`` with py-spy while the block runs (nothing if ``output`` is None)."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    output.parent.mkdir(parents=True, exist_ok=True)
    # py-spy talks on stdout, which carries this script's JSON report: send it to stderr.
    recorder = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw",  # noqa: S603
                                 "--rate", "250", "--nonblocking", "--output", str(output)],
                                stdout=sys.stderr)
    time.sleep(1)  # py-spy attaches before the load starts
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        recorder.wait(30)


async def phase(url: str, path: str, bodies: list[Any], concurrency: int, pid: int,
                profile: Path | None) -> dict[str, float]:
    """One measured phase: ``drive`` plus the gateway's CPU seconds spent meanwhile."""
    with profiled(pid, profile):
        before = cpu_seconds(pid)
        result = await drive(url, path, bodies, concurrency)
        after = cpu_seconds(pid)
    if before is not None and after is not None:
        result["gateway_cpu_s"] = after - before
    return result


async def measure(url: str, pid: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    profile: Path | None = args.profile
    await wait_ready(url)
    await drive(url, "/v1/events", [event(i) for i in range(200)], 8)  # warm-up
    single = await phase(url, "/v1/events", [event(i) for i in range(args.events)],
                         args.concurrency, pid, profile and profile / "single.txt")
    batches = [{"events": [event(b * args.batch_size + i) for i in range(args.batch_size)]}
               for b in range(args.batch_events // args.batch_size)]
    batch = await phase(url, "/v1/events/batch", batches, max(2, args.concurrency // 8), pid,
                        profile and profile / "batch.txt")
    return {"single": single, "batch": batch}


def per_unit_cpu(result: dict[str, float], units: float) -> dict[str, float]:
    cpu = result.pop("gateway_cpu_s", None)
    return {} if cpu is None else {"gateway_cpu_us_per_event": round(cpu / units * 1e6, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="single-event requests")
    parser.add_argument("--batch-events", type=int, default=20000, help="events sent in batches")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", type=Path, help="record each phase with py-spy into DIR")
    args = parser.parse_args()
    settings = load_settings(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    ensure_topics(AdminClient(settings.kafka_client_config()), declared_topics(settings), 1)
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    serde.encoder(declared_topics(settings)[0].value_subject, ENVELOPE, register=True)
    port = free_port()
    gateway = start_gateway(settings, port)
    try:
        measured = await measure(f"http://127.0.0.1:{port}", gateway.pid, args)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    raw = raw_producer(settings, serde, args.batch_events)
    single, batch = measured["single"], measured["batch"]
    single_rate = single["requests"] / single["seconds"]
    batch_rate = batch["requests"] * args.batch_size / batch["seconds"]
    single_cpu = per_unit_cpu(single, single["requests"])
    batch_cpu = per_unit_cpu(batch, batch["requests"] * args.batch_size)
    report = {
        "single": {**single, "events_per_s": round(single_rate), **single_cpu},
        "batch": {**batch, "events_per_s": round(batch_rate), **batch_cpu},
        "raw_producer_events_per_s": round(raw),
        "ratio_single_to_raw": round(single_rate / raw, 4),
        "ratio_batch_to_raw": round(batch_rate / raw, 4),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2, default=lambda v: round(v, 2)))


if __name__ == "__main__":
    asyncio.run(main())
