"""Latency of the synchronous decision API on a warm worker (issue target: p99 < 20 ms).

    .venv/bin/python -m bench.decide [--customers 1000] [--asks 3000]

1. A fresh deployment (its own topic prefix) with the repository's definitions; one
   worker (``python -m streams.app worker``), manual activation clock.
2. ``--customers`` customers onboarded (identify, two consents, a subscription: four
   events each), and the worker caught up (the last one's profile answers).
3. Warm-up: 200 questions. Then ``--asks`` questions, one at a time over one
   keep-alive connection, to random customers (email/send_email/marketing, with the
   churn journey, so consent, caps, quiet hours and the holdout are all evaluated).
   Prints p50, p95, p99 and max of the round trip as the client sees it.

A benchmark, not a test: the machine is shared, so read the figures, don't assert them.
Uses the stack the ACTIVATION_* settings point at (``scripts/stack up``); its topics are
deleted at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from streams.activation.distribution import publish
from streams.bootstrap import bootstrap
from streams.core.identity import new_profile_id
from streams.records import Envelope, Identifiers
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import REPO_ROOT, load_settings
from streams.topics import ENVELOPE, INGEST, admin_client
from tests.integration.core.harness import AUTH, Worker, free_port, produce, wait_for

TARGET_P99_MS = 20.0
QUESTION = {"channel": "email", "action_type": "send_email", "purpose": "marketing",
            "journey_id": "churn_prevention"}


def onboarding(cust: str, now: datetime) -> list[Envelope]:
    ids = Identifiers(customer_id=cust)

    def event(suffix: str, name: str, **kw: object) -> Envelope:
        return Envelope(event_id=f"{cust}-{suffix}", event_name=name, event_time=now,
                        received_time=now, source="bench", identifiers=ids, **kw)  # type: ignore[arg-type]

    end = (now + timedelta(days=90)).date()
    return [event("tz", "identify", properties={"timezone": "Europe/Berlin"}),
            event("c1", "consent_updated", payload={"consent_type": "marketing:email",
                                                     "status": "GRANTED"}),
            event("c2", "consent_updated", payload={"consent_type": "marketing:paid_media",
                                                     "status": "DENIED"}),
            event("sub", "subscription_started", payload={
                "plan": "pro", "start_date": date(2026, 1, 1), "contract_end_date": end})]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ask_many(base: str, pids: list[str], n: int) -> list[float]:
    took: list[float] = []
    with httpx.Client(base_url=base, headers=AUTH, timeout=10) as client:
        for _ in range(n):
            pid = random.choice(pids)  # noqa: S311 - a benchmark's sampling, not security
            start = time.perf_counter()
            answer = client.post(f"/v1/profiles/{pid}/decide", json=QUESTION)
            took.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"decide answered {answer.status_code}: {answer.text}")
    return took


def run(args: argparse.Namespace) -> None:
    uid = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    settings = load_settings(topic_prefix=f"bq{uid}.", app_id=f"bench-decide-{uid}",
                             data_dir=root / "data", worker_web_port=free_port(),
                             activation_clock="manual")
    worker = Worker(settings, root / "worker.log")
    try:
        bootstrap(settings)
        publish(settings, REPO_ROOT / "definitions", "bench")
        serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                          SchemaCatalog.load(settings.schemas_dir))
        encode = serde.encoder(f"{settings.topic(INGEST)}-value", ENVELOPE)
        now = datetime.now(UTC)
        customers = [f"bench-{uid}-{n}" for n in range(args.customers)]
        produce(settings, settings.topic(INGEST), [
            (e.key.encode(), encode(e.to_avro())) for c in customers for e in onboarding(c, now)])
        worker.start()
        pids = [new_profile_id(f"cid:{c}") for c in customers]
        wait_for(lambda: worker.get(f"/v1/profiles/{pids[-1]}").status_code == 200, 600,
                 "the worker to catch up")
        ask_many(worker.base, pids, 200)
        took = ask_many(worker.base, pids, args.asks)
        report(took)
    finally:
        worker.stop()
        admin = admin_client(settings)
        names = [t for t in admin.list_topics(timeout=10).topics
                 if t.startswith(settings.topic_prefix)]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()


def report(took: list[float]) -> None:
    p99 = percentile(took, 0.99)
    print(f"decision API, {len(took)} questions one at a time on a warm worker:")
    print(f"  p50 {statistics.median(took):.2f} ms  p95 {percentile(took, 0.95):.2f} ms  "
          f"p99 {p99:.2f} ms  max {max(took):.2f} ms")
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--asks", type=int, default=3000)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
