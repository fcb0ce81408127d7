"""The one ``faust.App``: broker, RocksDB (rocksdict) state, and our topics.

Start a worker with ``python -m streams.app worker -l info``: :func:`main` loads the
settings, and agents/worker.py builds the app and installs every stage on it. Nothing
is made at import: no settings, no app, no store (a test builds its own).
:func:`create_app` configures Faust explicitly: its patches (streams/faust_patches.py,
docs/faust.md), and the API-key gate in front of every route of the web server
(agents/auth.py) with its key check.
"""

from __future__ import annotations

import gc
from typing import Any

import faust

from agents.auth import KeyCheck, WebGate
from streams import faust_patches
from streams.settings import Settings, load_settings
from tables.memory import limit_heap_arenas


def faust_broker_credentials(settings: Settings) -> Any:
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return None
    assert settings.kafka_sasl_password is not None  # noqa: S101 - guaranteed by Settings
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=None,
    )


class ActivationApp(faust.App):
    """Faust's app with the web gate it was created with."""

    gate: WebGate  # in front of every route of the web server (agents/auth.py)
    # How long a fetch waits for data (streams/faust_patches.py: Faust fixes 1.5 s).
    fetch_max_wait_ms: int | None = None


def create_app(settings: Settings, keys: KeyCheck | None = None) -> ActivationApp:
    """A Faust app configured entirely from ``settings``, its web server behind the
    gate with the API keys of ``keys`` (by default the key topic's, read at start)."""
    faust_patches.apply_all()  # before any consumer exists (docs/faust.md)
    # Faust expects its data directory to exist; a fresh checkout has none.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    gate = WebGate()
    app = ActivationApp(settings.app_id, **_faust_settings(settings, gate))
    app.gate = gate
    app.fetch_max_wait_ms = int(settings.worker_fetch_max_wait.total_seconds() * 1000)
    _add_probes(app)
    use_api_keys(app, keys or KeyCheck.from_settings(settings))
    return app


def use_api_keys(app: ActivationApp, keys: KeyCheck) -> None:
    """Let the gate check requests against ``keys`` (it refuses all before), and read
    the key topic when the worker starts."""
    app.gate.install(keys)
    app.task(keys.start)


def _add_probes(app: ActivationApp) -> None:
    """``/healthz`` (the web server answers) and ``/readyz`` (API keys can be checked):
    the only routes the gate lets through without a key."""

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = app.gate.ready()
        return web.json({"status": "ready" if ready else "unavailable",
                         "checks": {"api_keys": ready}}, status=200 if ready else 503,
                        headers=None if ready else {"Retry-After": "2"})


def _faust_settings(settings: Settings, gate: WebGate) -> dict[str, Any]:
    servers = ";".join(f"kafka://{s}" for s in settings.kafka_bootstrap_servers.split(","))
    return dict(
        broker=servers,
        broker_credentials=faust_broker_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=settings.ingest_partitions,
        table_standby_replicas=settings.standby_replicas,
        # Committing only what has been fully processed is Faust's default (and it
        # flushes the producer before each commit); acks are explicit so
        # at-least-once holds when a worker dies.
        stream_wait_empty=True,
        producer_acks=-1,
        producer_enable_idempotence=True,
        consumer_auto_offset_reset="earliest",
        # A dead worker's partitions move after the session timeout. Too short a
        # timeout expels a live but CPU-starved worker, which is worse: without
        # transactions its in-flight table writes cannot be fenced (see README).
        broker_session_timeout=settings.worker_session_timeout.total_seconds(),
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_max_fetch_size=settings.worker_fetch_max_bytes,
        # Stages are installed by agents/worker.py, not found by scanning modules.
        autodiscover=False,
        **_web_settings(settings, gate),
    )


def _web_settings(settings: Settings, gate: WebGate) -> dict[str, Any]:
    return dict(
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        # The URL other workers forward profile API requests to (agents/api.py).
        web_host=settings.advertised_host,
        # Every request passes the gate first, whatever route it reaches.
        web_application_options={"middlewares": [gate.middleware()]},
        # Faust's own pages (statistics, graph, tables, router, performance) are of no
        # use here (no Faust table; the profile API forwards by itself): off. Their
        # APP_WEB_*_ENABLED variables can turn them back on, and Faust's index at / has
        # no switch: the gate asks an admin key for all of them anyway.
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
    )


def main() -> None:
    from agents.worker import build  # agents import this module: not at its top

    limit_heap_arenas()  # before librdkafka's, RocksDB's and the restores' threads
    settings = load_settings()
    app = build(settings)
    tune_gc(settings.worker_gc_threshold)
    app.main()


def tune_gc(threshold: int) -> None:
    """Python's cyclic collector, tuned for a worker. Once the worker is built, the
    objects it keeps (modules, classes, the app, its stages) go to the permanent
    generation (a full collection no longer walks them), and a young collection runs
    every ``threshold`` allocations (ACTIVATION_WORKER_GC_THRESHOLD) instead of 700:
    an event's objects are freed by reference counting, not by the collector, which
    took about a tenth of a loaded worker's CPU (almost a thousand collections for
    40,000 events; 30 after)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


if __name__ == "__main__":
    main()
