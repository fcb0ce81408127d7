"""The one ``faust.App``: broker, RocksDB (rocksdict) state, and our topics.

Start a worker with ``python -m streams.app worker`` (the README's run command
does it for you). Domain agents live in ``agents/<domain>.py`` and tables in
``tables/<domain>.py``; they register themselves on the app imported here.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.settings import Settings, load_settings


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


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured entirely from ``settings``."""
    servers = ";".join(f"kafka://{s}" for s in settings.kafka_bootstrap_servers.split(","))
    return faust.App(
        settings.app_id,
        broker=servers,
        broker_credentials=faust_broker_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=settings.ingest_partitions,
        table_standby_replicas=settings.standby_replicas,
        web_port=settings.worker_web_port,
        web_bind="127.0.0.1",
        # Committing only what has been fully processed is Faust's default;
        # acks are explicit so at-least-once holds when a worker dies.
        stream_wait_empty=True,
        producer_acks=-1,
        producer_enable_idempotence=True,
        autodiscover=["agents", "tables"],
        origin="streams",
    )


settings = load_settings()
app = create_app(settings)


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
