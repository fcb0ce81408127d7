"""Actions/s one delivery executor carries out, against a plain aiohttp loop posting the
same bodies to the same receiver in the same run; and the latency it adds.

    .venv/bin/python -m bench.delivery [--actions 20000] [--concurrency 16]

1. A receiver (its own process, aiohttp, answers 200 at once) counts requests.
2. **Plain loop**: this process posts the executor's request bodies with
   ``--concurrency`` requests in flight: the floor HTTP itself sets here.
3. **Executor**: ``--actions`` commands are produced to ``actions.crm`` first, then one
   ``python -m streams.delivery run`` starts with a destination of the same concurrency
   (signed, no rate limit); the rate counts from its first request to its last. Its CPU
   time per action is read from /proc (the machine is shared: CPU-µs per action is the
   steadier figure).
4. **Latency**: with the executor caught up, commands are produced at a steady 200/s for
   10 s; from each command's ``created_at`` to its ``delivered`` outcome (p50, p99). This
   is the whole path a command takes through Kafka and the executor.

Target: the executor at least 0.5 of the plain loop. Uses the stack the ACTIVATION_*
settings point at (``scripts/stack up``); its topics are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from aiohttp import web
from confluent_kafka import Producer

from streams.activation.distribution import publish
from streams.bootstrap import bootstrap
from streams.delivery.signing import body
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import REPO_ROOT, Settings, load_settings
from streams.topics import ACTION_COMMAND, DELIVERY_OUTCOMES, action_topic, admin_client
from tests.integration.core.harness import free_port
from tests.integration.delivery.conftest import executor_env, read_committed

SECRET = "whsec_" + base64.b64encode(b"bench-signing-secret-of-32-bytes").decode()


def serve(port: int) -> None:
    count = {"n": 0, "first": 0.0, "last": 0.0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        count["first"] = count["first"] or now
        count["n"], count["last"] = count["n"] + 1, now
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(count)

    async def reset(_: web.Request) -> web.Response:
        count.update(n=0, first=0.0, last=0.0)
        return web.json_response(count)

    app = web.Application()
    app.router.add_post("/hooks/{name}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def command(i: int, created: datetime | None = None) -> dict[str, Any]:
    return {"action_id": f"bench-{i:07d}", "channel": "crm", "action_type": "update_crm",
            "profile_id": f"p{i % 5000}", "identifiers": {
                "customer_id": f"c{i % 5000}", "email_sha256": None, "phone_sha256": None,
                "anonymous_id": None},
            "payload": {"task": "call_customer", "n": i}, "decision_id": f"d{i}",
            "created_at": created or datetime.now(UTC)}


async def plain_loop(url: str, bodies: list[bytes], concurrency: int) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            while not queue.empty():
                payload = queue.get_nowait()
                async with session.post(url, data=payload,
                                        headers={"content-type": "application/json"}) as r:
                    await r.read()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.monotonic() - start)


def stats(port: int) -> dict[str, float]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json())


def cpu_seconds(pid: int) -> float:
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> list[tuple[str, float]]:
    """CPU seconds per thread name (librdkafka's C threads included), largest first."""
    by: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        by[name] = by.get(name, 0.0) + cpu_seconds_of(task / "stat")
    return sorted(by.items(), key=lambda kv: -kv[1])


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def produce(settings: Settings, encode: Any, commands: list[dict[str, Any]]) -> None:
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 20})
    topic = settings.topic(action_topic("crm"))
    for cmd in commands:
        producer.produce(topic, encode(cmd), cmd["profile_id"].encode())
        producer.poll(0)
    producer.flush(60)


def publish_destination(settings: Settings, url: str, concurrency: int, root: Path) -> None:
    subprocess.run(["cp", "-r", str(REPO_ROOT / "definitions"), str(root / "defs")], check=True)
    for old in (root / "defs" / "destinations").glob("*.yaml"):
        old.unlink()
    spec = {"url": url, "concurrency": concurrency, "signing_secrets": ["BENCH"],
            "routes": [{"channel": "crm"}]}
    (root / "defs" / "destinations" / "bench.yaml").write_text(yaml.safe_dump(spec))
    publish(settings, root / "defs", "bench")


def run(args: argparse.Namespace) -> None:
    uid = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    settings = load_settings(topic_prefix=f"bd{uid}.", app_id=f"bench-delivery-{uid}",
                             data_dir=root / "data", delivery_secrets={"BENCH": SECRET},
                             delivery_metrics_port=free_port())
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.delivery", "--serve", str(port)],
                                cwd=REPO_ROOT)
    executor: subprocess.Popen[bytes] | None = None
    try:
        bootstrap(settings)
        serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                          SchemaCatalog.load(settings.schemas_dir))
        encode = serde.encoder(f"{settings.topic(action_topic('crm'))}-value", ACTION_COMMAND)
        url = f"http://127.0.0.1:{port}/hooks/bench"
        time.sleep(1.0)
        commands = [command(i) for i in range(args.actions)]
        before = resource.getrusage(resource.RUSAGE_SELF)
        plain = asyncio.run(plain_loop(url, [body(c) for c in commands], args.concurrency))
        after = resource.getrusage(resource.RUSAGE_SELF)
        plain_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        httpx.post(f"http://127.0.0.1:{port}/reset", timeout=5)
        publish_destination(settings, url, args.concurrency, root)
        produce(settings, encode, commands)
        log = (root / "executor.log").open("ab")
        executor = subprocess.Popen([sys.executable, "-m", "streams.delivery", "run"],
                                    cwd=REPO_ROOT, env=executor_env(settings), stdout=log,
                                    stderr=subprocess.STDOUT)
        spy = None if not args.profile else subprocess.Popen([  # collapsed stacks
            "py-spy", "record", "--gil", "--pid", str(executor.pid), "--duration", "15", "--format",
            "raw", "-o", args.profile])
        deadline = time.monotonic() + 600
        while stats(port)["n"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu0, n0 = cpu_seconds(executor.pid), stats(port)["n"]  # start-up excluded
        while stats(port)["n"] < args.actions and time.monotonic() < deadline:
            time.sleep(0.1)
        s = stats(port)
        rate = s["n"] / max(s["last"] - s["first"], 1e-9)
        cpu = (cpu_seconds(executor.pid) - cpu0) / max(s["n"] - n0, 1)
        threads = thread_cpu(executor.pid)
        latency = paced_latency(settings, encode, args.actions)
        if spy is not None:
            spy.wait(60)
        report(args, plain, plain_cpu, rate, cpu, latency)
        total = sum(sec for _, sec in threads) or 1.0
        print("executor CPU by thread (whole run): " + ", ".join(
            f"{name} {sec / total * 100:.0f}%" for name, sec in threads[:6]))
    finally:
        for proc in (executor, receiver):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        admin = admin_client(settings)
        names = [t for t in admin.list_topics(timeout=10).topics
                 if t.startswith(settings.topic_prefix)]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()


def paced_latency(settings: Settings, encode: Any, offset: int) -> list[float]:
    sent: list[dict[str, Any]] = []
    for tick in range(50):  # 200/s for 10 s, in 5 batches a second
        batch = [command(offset + tick * 40 + i) for i in range(40)]
        produce(settings, encode, batch)
        sent += batch
        time.sleep(0.2)
    wanted = {c["action_id"] for c in sent}
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    deadline = time.monotonic() + 60
    while True:
        done = [o for o in read_committed(settings, settings.topic(DELIVERY_OUTCOMES), serde,
                                          settings.action_partitions)
                if o["status"] == "delivered" and o["action_id"] in wanted]
        if len(done) >= len(wanted) or time.monotonic() > deadline:
            return [(o["occurred_at"] - o["command_created_at"]).total_seconds() for o in done]
        time.sleep(1)


def report(args: argparse.Namespace, plain: float, plain_cpu: float, rate: float, cpu: float,
           latency: list[float]) -> None:
    q = statistics.quantiles(latency, n=100) if len(latency) > 2 else [0.0] * 99
    print(json.dumps({"actions": args.actions, "concurrency": args.concurrency}))
    print(f"plain aiohttp loop : {plain:8,.0f} actions/s  "
          f"({plain_cpu / args.actions * 1e6:,.0f} CPU-us per action, unsigned, no Kafka)")
    print(f"delivery executor  : {rate:8,.0f} actions/s  "
          f"({cpu * 1e6:,.0f} CPU-us per action, signed, through Kafka)")
    print(f"ratio              : {rate / plain:.2f} of the plain loop (target >= 0.5)")
    print(f"command -> 2xx     : p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms "
          f"({len(latency)} commands at 200/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", help="write py-spy collapsed stacks of the executor here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        run(args)


if __name__ == "__main__":
    main()
