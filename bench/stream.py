"""Sustained events/s of the stream worker, with and without activation, vs two peers.

    .venv/bin/python -m bench.stream [--events 20000] [--customers 2000] [--no-quix]
                                     [--identity-partitions 4] [--core-only] [--returning]

Four workers run one after the other in the same run, over the same workload (the
integration tests' mixed workload, rebased to the year before now by
``bench.activation_defs.recent``), each with its own app id (fresh consumer group, tables
and data directory):

1. a plain Faust agent that only increments one table entry per event
   (``counts[key] += 1``): the floor Faust itself sets;
2. a Quix Streams application doing the same (``bench.quix_peer``: one counter per key
   in its RocksDB state), run in its own virtualenv ``.venv-bench-quix``, created on
   first use, because Quix Streams caps confluent-kafka and pydantic below ours.
   Both peers are at-least-once: offsets committed every second once the state's
   changelog writes are flushed, acks from all replicas, idempotent producer
   (``--quix-guarantee exactly-once``: Quix's transactional checkpoints instead);
3. the stream worker (screen, then the identity stage: dedup and identity, then the
   profile stage over its partitions) with no definitions published,
   so activation is idle: the stream core alone;
4. the same stream worker with 50 audiences and 10 journeys (``bench.activation_defs``)
   published to its definitions topic before it starts: every event is also evaluated
   against every audience, moves journeys, passes governance, and the resulting action
   commands and audience changes are written to their topics.

Each run has its own topic prefix (its own ingestion topic and internal topics) and app
id. Its ingestion topic is fed the very same records (same bytes, keys and partitions)
once its worker's /metrics answers, while the readings go on: a worker started on a
backlog ran some stages (the screening thread) before it answered, and their work fell
outside the window. Only the activation run's definitions topic holds the published set.
With ``--returning`` each run is first fed as many earlier events of the same customers
and processes them outside the window, so the measured events come from customers seen
before (the workload's customers are otherwise all new to the run).

Each worker's count of processed events is read from its /metrics every 0.1 s, with the
process's CPU time (user and system, all threads: /proc/PID/stat). Each rate is all the
events divided by the time from the last reading before any stage handled a record to the
first reading with every event done (start-up and the definitions' loading excluded; each
end may add one reading interval of idle time: ``bench.workers._window`` says why the
window is no narrower); its CPU-us per event is the CPU time over the same window
divided by the same events. The table gives the core's ratio against both peers, in events/s.
The activation overhead is the extra time per event relative to the core alone:
``(1/rate_activation - 1/rate_core) / (1/rate_core)``, and the extra CPU-us per event
relative to the core's (steadier on a loaded machine); the target is at most 30% in
both. The activation run's counters (audience changes, enrollments, actions by outcome)
are printed to show activation really worked. Topics of every prefix and app id and the temporary
directories are deleted at the end. Uses the stack the ACTIVATION_* settings point at.

Last, in the same run, the CPU-us per event of each stage's own work (screening,
identity, profile, activation) over the same workload: ``bench.stages``, the pure
stages in this process without a broker. The difference to the worker's CPU-us per
event is what Kafka, Faust, RocksDB and the transactions add.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import quix_peer, stages
from bench.activation_defs import SPAN, recent, write_definitions
from bench.workers import Run, counters, run_worker
from streams.activation.distribution import publish
from streams.bootstrap import bootstrap
from streams.records import Envelope
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings, load_settings
from streams.topics import ENVELOPE, INGEST, admin_client
from tests.integration.core.harness import free_port, produce, settings_env
from tests.integration.core.workload import workload

REPO = Path(__file__).resolve().parent.parent
TARGET_OVERHEAD = 0.30
SHORT_WINDOW_S = 2.0  # a rate measured over less is flagged in the report


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


# --- preparing the runs --------------------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    """Each run's settings: its own topic prefix (its own ingestion topic, which it is
    fed once it answers) and app id."""

    root: Path  # temporary: data directories, definitions, worker logs
    core: Settings  # the core-alone run
    activation: Settings  # the activation run: published definitions
    plain: Settings  # the plain Faust agent
    quix: Settings  # the Quix Streams peer

    def runs(self) -> tuple[Settings, ...]:
        return self.core, self.activation, self.plain, self.quix


Records = list[tuple[bytes, bytes]]


def _settings(root: Path, uid: str, tag: str, slots: int) -> Settings:
    return load_settings(topic_prefix=f"bench{uid}{tag}.", app_id=f"bench-{uid}{tag}",
                         data_dir=root / f"state-{tag or 'core'}", worker_web_port=free_port(),
                         identity_partitions=slots)


def new_bench(slots: int = 1) -> Bench:
    """Settings of every run; ``slots``: partitions of the identity stage (its layout)."""
    uid = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    return Bench(root, *(_settings(root, uid, tag, slots) for tag in ("", "act", "plain", "quix")))


def _encoded(settings: Settings, data: list[Envelope]) -> Records:
    """Events as (key, Avro value) records."""
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    encode = serde.encoder(f"{settings.topic(INGEST)}-value", ENVELOPE)
    return [(e.key.encode(), encode(e.to_avro())) for e in data]


def earlier(events: int, customers: int, now: datetime) -> list[Envelope]:
    """``--returning``'s warm-up: other events of the same customers (another seed),
    with ids of their own, a year before the measured ones."""
    return [replace(e, event_id=f"warm-{e.event_id}", event_time=e.event_time - SPAN,
                    received_time=e.received_time - SPAN)
            for e in recent(workload(events, customers, seed=8), events, now)]


@dataclass(frozen=True)
class Workload:
    records: Records  # what every run is fed and measured on (same bytes, keys, partitions)
    unique: int  # its events less the re-sent duplicates
    warm: Records  # with --returning: fed and processed first, outside the window


def prepare(bench: Bench, events: int, customers: int, returning: bool) -> Workload:
    """Topics and schemas for every prefix, the definitions published for the activation
    run only, and the records."""
    for settings in bench.runs():
        bootstrap(settings)  # topics, and every value schema (actions, audience changes)
    now = datetime.now(UTC)
    data = recent(workload(events, customers), events, now)
    warm = _encoded(bench.core, earlier(events, customers, now)) if returning else []
    write_definitions(bench.root / "definitions")
    publish(bench.activation, bench.root / "definitions", "bench.stream")
    return Workload(_encoded(bench.core, data), len({e.event_id for e in data}), warm)


def feeder(settings: Settings, records: Records) -> Callable[[], None]:
    """What writes a run's input once its worker answers (bench.workers.run_worker)."""
    return lambda: produce(settings, settings.topic(INGEST), records)


def run(cmd: list[str], env: dict[str, str], settings: Settings, work: Workload,
        log: Path) -> Run:
    """One run fed ``work`` (its warm-up first, outside the window, if any)."""
    warm = (len(work.warm), feeder(settings, work.warm)) if work.warm else None
    return run_worker(cmd, env, settings.worker_web_port, len(work.records), log,
                      feeder(settings, work.records), warm)


def cleanup(bench: Bench) -> list[str]:
    """Delete the topics of every prefix and app id (changelogs), and the temp dirs."""
    admin = admin_client(bench.core)
    runs = bench.runs()
    starts = tuple({s.topic_prefix for s in runs} | {s.app_id for s in runs})
    # The Quix peer's changelog: changelog__<its consumer group>--<topic>--<store>.
    starts += (f"changelog__{_quix_group(bench.quix)}",)
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(starts)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
    shutil.rmtree(bench.root, ignore_errors=True)
    return names


# --- the four runs and the report ----------------------------------------------------------

def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings_env(settings)}


def _quix_group(settings: Settings) -> str:
    return f"{settings.app_id}-quix"


@dataclass(frozen=True)
class Runs:
    plain: Run
    quix: Run | None  # None with --no-quix
    alone: Run
    activation: Run


def run_quix(bench: Bench, python: Path, work: Workload, guarantee: str) -> Run:
    """The Quix Streams peer (bench.quix_peer) under the side venv's interpreter."""
    quix = bench.quix
    cmd = [str(python), "-m", "bench.quix_peer", "--topic", quix.topic(INGEST),
           "--group", _quix_group(quix), "--state-dir", str(bench.root / "state-quix"),
           "--port", str(quix.worker_web_port), "--guarantee", guarantee]
    env = {**os.environ, quix_peer.KAFKA_CONFIG_ENV: json.dumps(quix.kafka_client_config())}
    return run(cmd, env, quix, work, bench.root / "quix.log")


# -l info as in production: at warn and above Faust's console spinner sets the root
# logger to DEBUG, and every Kafka send then builds (and drops) debug log records.
WORKER = [sys.executable, "-m", "streams.app", "worker", "-l", "info"]


def run_stream_worker(bench: Bench, settings: Settings, work: Workload, log: str) -> Run:
    return run(WORKER, _env(settings), settings, work, bench.root / log)


def measure(bench: Bench, work: Workload, quix: Path | None, guarantee: str) -> Runs:
    """The four runs, one after the other (the Quix peer's only if its venv is given)."""
    plain = bench.plain
    faust_agent = run([sys.executable, "-m", "bench.stream", "plain-worker", "worker", "-l",
                       "info"], _env(plain), plain, work, bench.root / "plain.log")
    peer = run_quix(bench, quix, work, guarantee) if quix else None
    alone = run_stream_worker(bench, bench.core, work, "core.log")
    with_act = run_stream_worker(bench, bench.activation, work, "activation.log")
    return Runs(faust_agent, peer, alone, with_act)


def _split(text: str, name: str, label: str) -> str:
    by = counters(text, name, label)
    parts = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(by.items()))
    return f"{sum(by.values()):,.0f}" + (f" ({parts})" if parts else "")


def _quix_label(text: str) -> str:
    version = next(iter(counters(text, "bench_peer_info", "version")), "?")
    guarantee = next(iter(counters(text, "bench_peer_info", "guarantee")), "?")
    return f"Quix Streams {version} ({guarantee}, one state increment)"


def report(runs: Runs) -> None:
    alone, with_act = runs.alone.rate, runs.activation.rate
    rows = [("plain Faust agent (one table increment)", runs.plain)]
    if runs.quix:
        rows.append((_quix_label(runs.quix.text), runs.quix))
    rows += [("stream worker, core alone (screen+dedup+identity+profile)", runs.alone),
             ("stream worker + activation (50 audiences, 10 journeys)", runs.activation)]
    width = max(len(name) for name, _ in rows)
    print(f"{'run':<{width}}  {'events/s':>9}  {'us/event':>8}  {'CPU-us/event':>12}")
    for name, run in rows:
        print(f"{name:<{width}}  {run.rate:>9,.0f}  {1e6 / run.rate:>8,.0f}"
              f"  {run.cpu_us:>12,.0f}")
    for name, run in rows:
        if run.seconds < SHORT_WINDOW_S:
            print(f"note: {name.split(' (')[0]} measured over {run.seconds:.2f} s only "
                  "(readings every 0.1 s): raise --events for a steadier figure")
    print(f"ratio core/plain Faust: {alone / runs.plain.rate:.2f}x events/s")
    if runs.quix:
        print(f"ratio core/Quix Streams: {alone / runs.quix.rate:.2f}x events/s")
    overhead = (1 / with_act - 1 / alone) / (1 / alone)
    # Wall time per event jumps with the machine's load; CPU time per event much less.
    cpu_overhead = runs.activation.cpu_us / runs.alone.cpu_us - 1
    verdict = "met" if max(overhead, cpu_overhead) <= TARGET_OVERHEAD else "NOT met"
    print(f"activation overhead per event: {overhead:+.0%} in time, {cpu_overhead:+.0%} "
          f"in CPU (target at most +{TARGET_OVERHEAD:.0%} in both: {verdict})")
    for name, run in (("core", runs.alone), ("activation", runs.activation)):
        print(f"{name} run: transactions by stage " + _split(
            run.text, "activation_stage_transactions_total", "stage"))
    text = runs.activation.text
    enrollments = sum(counters(text, "activation_journey_enrollments_total").values())
    print("activation run: audience changes "
          + _split(text, "activation_audience_changes_total", "change")
          + f"; journey enrollments {enrollments:,.0f}; actions "
          + _split(text, "activation_actions_total", "outcome"))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--no-quix", action="store_true",
                        help="skip the Quix Streams peer (and its virtualenv)")
    parser.add_argument("--quix-guarantee", default="at-least-once",
                        choices=["at-least-once", "exactly-once"],
                        help="the Quix peer's processing guarantee (the Faust agent's is "
                        "at-least-once)")
    parser.add_argument("--core-only", action="store_true",
                        help="run only the core worker (no peers, no activation run, no "
                        "per-stage report): quicker before/after comparisons")
    parser.add_argument("--returning", action="store_true",
                        help="every run first processes as many earlier events of the same "
                        "customers (outside the window): the measured events come from "
                        "customers seen before, not new ones")
    parser.add_argument("--identity-partitions", type=int,
                        default=Settings.model_fields["identity_partitions"].default,
                        help="partitions of the identity stage (default: the settings' "
                        "default); 1 is the single layout (docs/partitioned-identity.md)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    # Before anything is timed.
    quix = None if args.no_quix or args.core_only else quix_peer.ensure_venv()
    bench = new_bench(args.identity_partitions)
    try:
        work = prepare(bench, args.events, args.customers, args.returning)
        if args.core_only:
            core = run_stream_worker(bench, bench.core, work, "core.log")
        else:
            runs = measure(bench, work, quix, args.quix_guarantee)
    finally:
        deleted = cleanup(bench)
    print(f"events: {len(work.records)} ({work.unique} unique), customers: "
          f"{args.customers}, identity partitions: {args.identity_partitions}"
          + (f", after a warm-up of {len(work.warm)} earlier events of the same customers"
             if work.warm else ""))
    if args.core_only:
        print(f"core alone: {core.rate:,.0f} events/s, {core.cpu_us:,.0f} CPU-us/event "
              f"over {core.seconds:.2f} s; transactions by stage "
              + _split(core.text, "activation_stage_transactions_total", "stage"))
        return
    report(runs)
    print(f"cleaned up: {len(deleted)} topics and {bench.root}")
    print()
    stages.report(args.events, args.customers)  # per stage, in the same run


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "plain-worker":
        sys.argv = [sys.argv[0], *sys.argv[2:]]
        from bench.stream import create_plain_app as _create

        _create().main()
    else:
        main()
