"""Sustained events/s of one stream worker vs a plain Faust agent, same run, same data.

    .venv/bin/python -m bench.stream [--events 20000] [--customers 2000]

Uses the stack the ACTIVATION_* settings point at (default: the local dev stack),
with a fresh topic prefix per run. Both workers read the same pre-filled ingestion
topic from the beginning; the rate is events divided by the time from the first to
the last processed event (worker start-up excluded). The plain agent only
increments one table entry per event (``counts[key] += 1``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def create_plain_app() -> Any:
    """The baseline: one agent, one table increment per event, nothing else."""
    import faust

    from streams.app import create_app
    from streams.settings import load_settings
    from streams.topics import INGEST

    settings = load_settings()
    app = create_app(settings.model_copy(update={"app_id": settings.app_id + "-plain"}))
    app.conf.autodiscover = False
    topic = app.topic(settings.topic(INGEST), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    counts = app.Table("counts", default=int, key_type=bytes)
    seen = [0]

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            counts[event.message.key] += 1
            seen[0] += 1

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        line = f'activation_stream_events_total{{outcome="applied",stage="plain"}} {seen[0]}\n'
        return web.bytes(line.encode(), content_type="text/plain")

    _ = faust
    return app


def _metric(port: int) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("activation_stream_events_total") and (
                'stage="stream.profile"' in line or 'stage="plain"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_worker(cmd: list[str], env: dict[str, str], port: int, expected: int) -> float:
    """Start a worker, return events/s between its first and last processed event."""
    log = tempfile.NamedTemporaryFile(prefix="bench-worker-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 1800
        first_t, first_n, last_n = 0.0, -1.0, 0.0
        while time.monotonic() < deadline and proc.poll() is None:
            n = _metric(port)
            if n > 0 and first_n < 0:
                first_t, first_n = time.monotonic(), n
            if n >= expected:
                return (n - first_n) / max(1e-6, time.monotonic() - first_t)
            last_n = n
            time.sleep(0.1)
        raise SystemExit(f"worker stopped or timed out at {last_n} events; log {log.name}")
    finally:
        proc.terminate()
        proc.wait(60)


def prepare(events: int, customers: int) -> tuple[dict[str, str], int]:
    from confluent_kafka.admin import AdminClient

    from streams.schemas import SchemaCatalog
    from streams.serde import AvroSerde, RegistryClient
    from streams.settings import load_settings
    from streams.topics import DEAD_LETTER_RECORD, ENVELOPE, declared_topics, ensure_topics
    from tests.integration.core.harness import produce, settings_env
    from tests.integration.core.workload import workload

    uid = uuid.uuid4().hex[:8]
    settings = load_settings(topic_prefix=f"bench{uid}.", app_id=f"bench-{uid}",
                             data_dir=Path(tempfile.mkdtemp(prefix="bench-state-")))
    specs = declared_topics(settings)
    ensure_topics(AdminClient(settings.kafka_client_config()), specs,
                  settings.kafka_replication_factor)
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    encode = serde.encoder(specs[0].value_subject, ENVELOPE, register=True)
    serde.encoder(specs[1].value_subject, DEAD_LETTER_RECORD, register=True)
    data = workload(events, customers)
    produce(settings, specs[0].name, [(e.key.encode(), encode(e.to_avro())) for e in data])
    unique = len({e.event_id for e in data})
    return {**os.environ, **settings_env(settings)}, unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    env, unique = prepare(args.events, args.customers)
    port = int(env["ACTIVATION_WORKER_WEB_PORT"])
    py = sys.executable
    plain = run_worker([py, "-m", "bench.stream", "plain-worker", "worker", "-l", "warn"],
                       env, port, args.events)
    # The full worker counts applied (unique) events on its profile stage.
    full = run_worker([py, "-m", "streams.app", "worker", "-l", "warn"], env, port, unique)
    print(f"events: {args.events} ({unique} unique), customers: {args.customers}")
    print(f"plain Faust agent (one table increment): {plain:,.0f} events/s")
    print(f"stream worker (screen+dedup+identity+profile): {full:,.0f} events/s")
    print(f"ratio worker/plain: {full / plain:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "plain-worker":
        sys.argv = [sys.argv[0], *sys.argv[2:]]
        from bench.stream import create_plain_app as _create

        _create().main()
    else:
        main()
