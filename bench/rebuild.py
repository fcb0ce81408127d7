"""Time to rebuild N profiles from the changelog, and the worker's RSS holding them.

    .venv/bin/python -m bench.rebuild [--profiles 1000000] [--keep-logs]

Uses the stack the ACTIVATION_* settings point at (default: the local dev stack),
with a fresh topic prefix and app id per run; everything the run created (topics,
state and log directories) is deleted at the end.

1. Content: a few dozen template customers (identifiers, traits, a subscription,
   consent, purchases, a timeline of 5 entries, one in ten merged from two profiles)
   go through the real pure stages (streams/core/sandbox.py over dicts), and the
   resulting keys of the identity store (``d:`` markers, ``i:``/``k:`` identity graph,
   ``r:`` redirects) and of the profile stores (``p:`` profile, ``r:``/``h:`` merges)
   are copied for every profile with its own customer id, event ids, email/phone
   hashes and profile ids. The records go straight onto ``<app id>-identity-changelog``
   (1 partition) and ``<app id>-profiles-changelog`` (the partition of each profile id),
   compacted, as tables/state.py declares them: one record per key, i.e. fully
   compacted changelogs.
2. Baseline: a plain confluent-kafka consumer reads those topics from start to end.
3. Baseline: a worker (``python -m streams.app worker``) with empty changelogs
   (another app id) from process start to every store claimed: start-up cost.
4. The worker with the filled changelogs and an empty data directory, from process
   start to every store claimed (the changelogs read to their end);
   then its RSS (``VmRSS``) and peak (``VmHWM``) from /proc, and one profile read
   through the profile API as a check that the state really is there.

Prints figures and ratios, never asserts timings (2 shared cores: expect noise).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.core.identity import identifier_keys, new_profile_id
from streams.core.pipeline import StageConfig
from streams.core.routing import partition_of
from streams.core.sandbox import Sandbox
from streams.records import Envelope, Identifiers
from streams.settings import Settings, load_settings
from tests.integration.core.harness import AUTH, free_port, settings_env

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = 40
TARGET_MB = 600
TIMEOUT_S = 4 * 3600  # generous: 1,000,000 profiles took 14 minutes through Faust's tables
# The worker claims each store as soon as it is assigned its partition, and logs
# "state <name>[<partition>] claimed" once that changelog partition is read to its end
# (tables/state.py); ready = every store claimed.
CLAIMED = " claimed: "
READY = "every store claimed"
MARKS = ("Worker ready", READY)
HEX = "0123456789abcdef"
REMAINING = " restore: "  # progress, every million records of one store
IDENTITY_KEYS = (b"d:", b"i:", b"k:")  # and the identity store's r: (see build_templates)


@dataclass
class Template:
    token: str  # the customer's token, e.g. "c0000007": in every id the customer owns
    identity: list[tuple[bytes, bytes]]  # the identity store's records
    profiles: list[tuple[bytes, bytes]]  # the profile stores' records
    creators: list[str]  # identifier keys (with the token) each profile id derives from


def _token(n: int) -> str:
    return f"c{n:07d}"


def _events(t: int, rng: random.Random, now: datetime) -> list[Envelope]:
    """Five events of one template customer; ids all contain the customer's token."""
    tok = _token(t)
    full = Identifiers(customer_id=tok, anonymous_id=f"a-{tok}",
                       email_sha256=HEX * 3 + "01234567" + tok if rng.random() < 0.6 else None,
                       phone_sha256=HEX * 3 + "76543210" + tok if rng.random() < 0.3 else None)
    merge = t % 10 == 0  # anonymous and known profile first, linked by the third event
    ids = [Identifiers(anonymous_id=f"a-{tok}"), Identifiers(customer_id=tok)] if merge else []
    bodies: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
        ("identify", {"tier": rng.choice(["gold", "silver"]), "country": "DE",
                      "language": rng.choice(["de", "en"]), "newsletter": True}, None),
        ("subscription_started", {}, {"plan": rng.choice(["basic", "pro"]),
                                      "start_date": date(2026, 1, 1), "subscription_id": "s1",
                                      "contract_end_date": date(2026, 12, 31)}),
        ("consent_updated", {}, {"consent_type": "marketing:email",
                                 "status": rng.choice(["GRANTED", "DENIED"])}),
        ("purchase_completed", {}, {"order_id": f"o-{tok}-1", "currency": "EUR",
                                    "order_value": Decimal(rng.randint(100, 99_999)) / 100,
                                    "product_ids": [f"sku{rng.randint(1, 50)}"]}),
        ("page_viewed", {"path": f"/products/sku{rng.randint(1, 50)}"}, None),
    ]
    start = now - timedelta(days=rng.randint(1, 5))
    return [Envelope(event_id=f"e-{tok}-{i}", event_name=name,
                     event_time=start + timedelta(minutes=7 * i),
                     received_time=start + timedelta(minutes=7 * i, seconds=1),
                     source="kafka:bench", identifiers=ids[i] if i < len(ids) else full,
                     properties=props, payload=payload)
            for i, (name, props, payload) in enumerate(bodies)]


def build_templates(count: int, now: datetime) -> list[Template]:
    """Table contents of ``count`` customers, produced by the real pure pipeline."""
    rng = random.Random(11)
    cfg = StageConfig(timedelta(days=7), timedelta(seconds=5), 200)
    out = []
    for t in range(count):
        stages = Sandbox(cfg, partitions=1)
        events = _events(t, rng, now)
        for offset, envelope in enumerate(events):
            stages.send(envelope, now, f"bench:0:{offset}")
        creators = sorted({k for e in events for k in identifier_keys(e.identifiers)
                           if b"p:" + new_profile_id(k).encode() in stages.parts[0]})
        out.append(Template(_token(t), sorted(stages.identity.items()),
                            sorted(stages.parts[0].items()), creators))
    return out


def _swapped(records: list[tuple[bytes, bytes]], swaps: list[tuple[bytes, bytes]]
             ) -> list[tuple[bytes, bytes]]:
    out = []
    for key, value in records:
        if key.startswith(b"\x00"):  # a store's own bookkeeping (its input offset)
            continue
        for old, new in swaps:
            key, value = key.replace(old, new), value.replace(old, new)
        out.append((key, value))
    return out


def profile_records(template: Template, n: int, partitions: int
                    ) -> list[tuple[str, int, bytes, bytes]]:
    """The template's records for profile ``n`` (its token and profile ids swapped in):
    (store, partition, key, value); profile records go to their profile's partition."""
    tok = _token(n)
    swaps = [(template.token.encode(), tok.encode())]
    swaps += [(new_profile_id(k).encode(), new_profile_id(k.replace(template.token, tok)).encode())
              for k in template.creators]
    out = [("identity", 0, k, v) for k, v in _swapped(template.identity, swaps)]
    for key, value in _swapped(template.profiles, swaps):
        pid = key.split(b":", 1)[1].decode()
        out.append(("profiles", partition_of(pid, partitions), key, value))
    return out


@dataclass
class Produced:
    records: int = 0
    key_bytes: int = 0
    value_bytes: int = 0
    seconds: float = 0.0


def produce_changelog(settings: Settings, topics: dict[str, str], profiles: int,
                      templates: list[Template]) -> Produced:
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 50,
                         "batch.size": 1_000_000, "compression.type": "none",
                         "queue.buffering.max.messages": 500_000, "acks": "all"})
    stats, start = Produced(), time.monotonic()
    parts = settings.profile_partitions
    for n in range(profiles):
        for store, partition, key, value in profile_records(templates[n % len(templates)], n,
                                                            parts):
            while True:
                try:
                    producer.produce(topics[store], key=key, value=value, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
            stats.records += 1
            stats.key_bytes += len(key)
            stats.value_bytes += len(value)
        if n % 1000 == 0:
            producer.poll(0)
    if producer.flush(300) != 0:
        raise SystemExit("changelog records were not all delivered")
    stats.seconds = time.monotonic() - start
    return stats


def raw_read(settings: Settings, topics: dict[str, str], expected: int) -> float:
    """Seconds for a plain consumer to read the changelogs from the first to the last
    record."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"raw-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        start, seen = time.monotonic(), 0
        consumer.assign([TopicPartition(topics["identity"], 0, 0)]
                        + [TopicPartition(topics["profiles"], p, 0)
                           for p in range(settings.profile_partitions)])
        while seen < expected and time.monotonic() - start < 1800:
            for msg in consumer.consume(10_000, 1.0):
                # key() and value() copy the bytes into Python objects, as the worker must
                if msg.error() is None and msg.key() is not None and msg.value() is not None:
                    seen += 1
        if seen < expected:
            raise SystemExit(f"raw read saw {seen} of {expected} records")
        return time.monotonic() - start
    finally:
        consumer.close()


@dataclass
class WorkerRun:
    marks: dict[str, float] = field(default_factory=dict)  # log line -> seconds since start
    rss_mb: float = 0.0
    peak_mb: float = 0.0
    cpu_s: float = 0.0
    state_mb: float = 0.0
    probe: str = ""


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS/VmHWM in MB and user+system CPU seconds of a live process."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _watch(proc: subprocess.Popen[bytes], log: Path, start: float, run: WorkerRun,
           stores: int) -> None:
    """Note when each of MARKS first appears in the log; return once recovery ended
    (``stores`` claims logged)."""
    pos, tail, shown, claims = 0, "", 0.0, 0
    while time.monotonic() - start < TIMEOUT_S:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited {proc.returncode}; log: {log}")
        with log.open("rb") as fh:
            fh.seek(pos)
            chunk = fh.read()
        pos += len(chunk)
        claims += chunk.decode(errors="replace").count(CLAIMED)
        text, now = tail + chunk.decode(errors="replace"), time.monotonic() - start
        tail = text[-200:]
        if claims >= stores:
            text += READY
        for mark in MARKS:
            if mark in text and mark not in run.marks:
                run.marks[mark] = now
        if READY in run.marks:
            return
        if REMAINING in text and now - shown >= 60:
            done = text.rsplit(REMAINING, 1)[1].split(" ", 1)[0]
            print(f"  {now:,.0f} s: {done} changelog records restored", flush=True)
            shown = now
        time.sleep(0.05)
    raise SystemExit(f"worker not ready within {TIMEOUT_S} s; log: {log}")


def worker_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}


def fetch_size(settings: Settings) -> int:
    """The worker app's consumer_max_fetch_size (Faust reads it from code or env)."""
    code = ("from streams.app import create_app; from streams.settings import load_settings;"
            " print(create_app(load_settings()).conf.consumer_max_fetch_size)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=worker_env(settings),
                         capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.split()[-1])


def run_worker(settings: Settings, log: Path, probe: str) -> WorkerRun:
    """Start a worker, wait for recovery, read its memory, query one profile, stop it."""
    env = worker_env(settings)
    cmd = [sys.executable, "-m", "streams.app", "worker", "-l", "info",
           "--web-port", str(settings.worker_web_port)]
    run = WorkerRun()
    with log.open("wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _watch(proc, log, start, run, 1 + settings.profile_partitions)
        time.sleep(2.0)  # settle: the RSS of a worker holding the state, at rest
        status = _proc_status(proc.pid)
        run.rss_mb, run.peak_mb, run.cpu_s = status["VmRSS"], status["VmHWM"], status["cpu"]
        url = f"http://127.0.0.1:{settings.worker_web_port}/v1/profiles?customer_id={probe}"
        run.probe = str(httpx.get(url, headers=AUTH, timeout=30).status_code)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
    run.state_mb = sum(p.stat().st_size for p in settings.data_dir.rglob("*")
                       if p.is_file()) / 1e6
    return run


def prepare(uid: str, root: Path) -> tuple[Settings, AdminClient]:
    from streams.topics import declared_topics, ensure_topics

    settings = load_settings(topic_prefix=f"rebuild{uid}.", app_id=f"rebuild-{uid}",
                             data_dir=root / "state", worker_web_port=free_port())
    admin = AdminClient({**settings.kafka_client_config()})
    ensure_topics(admin, declared_topics(settings), settings.kafka_replication_factor)
    return settings, admin


def changelog_topics(settings: Settings, admin: AdminClient) -> dict[str, str]:
    """The stores' changelogs as tables/state.py names and declares them."""
    topics = {name: f"{settings.app_id}-{name}-changelog" for name in ("identity", "profiles")}
    futures = admin.create_topics([
        NewTopic(topics["identity"], 1, settings.kafka_replication_factor,
                 config={"cleanup.policy": "compact"}),
        NewTopic(topics["profiles"], settings.profile_partitions,
                 settings.kafka_replication_factor, config={"cleanup.policy": "compact"})])
    for future in futures.values():
        future.result(30)
    return topics


def cleanup(admin: AdminClient, uid: str) -> list[str]:
    """Delete every topic this run created (its prefix and its app ids)."""
    try:
        names = [t for t in admin.list_topics(timeout=30).topics
                 if t.startswith((f"rebuild{uid}.", f"rebuild-{uid}"))]
        for future in admin.delete_topics(names, operation_timeout=60).values() if names else []:
            future.result(90)
    except KafkaException as exc:
        print(f"could not delete topics rebuild{uid}.* and rebuild-{uid}-*: {exc}",
              file=sys.stderr)
        return []
    return names


def remove_dirs(root: Path, keep_logs: bool) -> None:
    for path in root.iterdir():
        if not (keep_logs and path.suffix == ".log"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not keep_logs:
        root.rmdir()


def report(profiles: int, made: Produced, raw_s: float, empty: WorkerRun,
           full: WorkerRun, fetch: int) -> Iterator[str]:
    ready, startup = full.marks[READY], empty.marks[READY]
    mb = (made.key_bytes + made.value_bytes) / 1e6
    yield f"profiles: {profiles:,} (changelog records: {made.records:,}, " \
          f"{mb:,.0f} MB keys+values, {made.value_bytes / made.records:,.0f} B/value avg)"
    yield f"produce: {made.seconds:.1f} s ({made.records / made.seconds:,.0f} records/s)"
    yield f"raw consumer read of the changelog (baseline): {raw_s:.1f} s " \
          f"({made.records / raw_s:,.0f} records/s)"
    yield f"worker start-up, empty changelog (baseline): {startup:.1f} s to '{READY}'"
    marks = ", ".join(f"{k!r} {v:.1f} s" for k, v in full.marks.items())
    yield f"worker rebuild: {ready:.1f} s to '{READY}' ({marks}); " \
          f"consumer_max_fetch_size {fetch:,} B"
    yield f"rebuild minus start-up: {ready - startup:.1f} s " \
          f"({made.records / max(0.001, ready - startup):,.0f} records/s, " \
          f"{profiles / max(0.001, ready - startup):,.0f} profiles/s)"
    yield f"ratio (rebuild - start-up) / raw read: {(ready - startup) / raw_s:.1f}x"
    yield f"worker CPU until ready: {full.cpu_s:.1f} s (empty: {empty.cpu_s:.1f} s); " \
          f"RocksDB on disk: {full.state_mb:,.0f} MB; profile API probe: HTTP {full.probe}"
    yield f"RSS after recovery: {full.rss_mb:,.0f} MB (peak {full.peak_mb:,.0f} MB); " \
          f"empty worker: {empty.rss_mb:,.0f} MB (peak {empty.peak_mb:,.0f} MB)"
    met = "met" if full.peak_mb <= TARGET_MB else "NOT met"
    yield f"target: RSS <= {TARGET_MB} MB holding the profiles, judged on the peak: {met}"


def measure(settings: Settings, admin: AdminClient, root: Path, profiles: int) -> list[str]:
    now = datetime.now(UTC)
    templates = build_templates(TEMPLATES, now)
    topics = changelog_topics(settings, admin)
    made = produce_changelog(settings, topics, profiles, templates)
    print(f"produced {made.records:,} records in {made.seconds:.1f} s", flush=True)
    raw_s = raw_read(settings, topics, made.records)
    empty_settings = settings.model_copy(update={"app_id": settings.app_id + "-empty",
                                                 "data_dir": root / "state-empty"})
    empty = run_worker(empty_settings, root / "worker-empty.log", _token(0))
    print(f"empty worker ready in {empty.marks[READY]:.1f} s", flush=True)
    full = run_worker(settings, root / "worker-rebuild.log", _token(profiles - 1))
    return list(report(profiles, made, raw_s, empty, full, fetch_size(settings)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000,
                        help="profiles to rebuild (try 20000 for a quick smoke run)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs")
    args = parser.parse_args()
    # SIGTERM too must stop the workers and delete the topics (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    uid = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    try:
        settings, admin = prepare(uid, root)
        try:
            lines = measure(settings, admin, root, max(1, args.profiles))
        finally:
            deleted = cleanup(admin, uid)
    finally:
        remove_dirs(root, args.keep_logs)
    print("\n".join(lines))
    print(f"deleted {len(deleted)} topics" + (f"; worker logs in {root}" if args.keep_logs
                                               else ""))


if __name__ == "__main__":
    main()
