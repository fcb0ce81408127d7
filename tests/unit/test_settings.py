"""Bad configuration fails at start with a message naming the variable to fix."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from streams.errors import ConfigError
from streams.settings import Settings


def test_defaults_point_at_the_local_stack(
    monkeypatch: pytest.MonkeyPatch, settings_factory: Callable[..., Settings]
) -> None:
    for name in ("ACTIVATION_KAFKA_BOOTSTRAP_SERVERS", "ACTIVATION_SCHEMA_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)  # a shell pointed at the test stack
    settings = settings_factory()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.schema_registry_url.endswith("/apis/ccompat/v7")
    assert settings.dedup_window == timedelta(days=7)


def test_environment_overrides(
    monkeypatch: pytest.MonkeyPatch, settings_factory: Callable[..., Settings]
) -> None:
    monkeypatch.setenv("ACTIVATION_KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9092")
    monkeypatch.setenv("ACTIVATION_DEDUP_WINDOW", "P3D")
    settings = settings_factory()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.dedup_window == timedelta(days=3)


@pytest.mark.parametrize(
    "field,value,variable",
    [
        ("kafka_bootstrap_servers", "no-port", "ACTIVATION_KAFKA_BOOTSTRAP_SERVERS"),
        ("schema_registry_url", "registry:8081", "ACTIVATION_SCHEMA_REGISTRY_URL"),
        ("ingest_partitions", 0, "ACTIVATION_INGEST_PARTITIONS"),
        ("dedup_window", timedelta(0), "ACTIVATION_DEDUP_WINDOW"),
        ("topic_prefix", "bad prefix!", "ACTIVATION_TOPIC_PREFIX"),
        ("gateway_unknown_events", "maybe", "ACTIVATION_GATEWAY_UNKNOWN_EVENTS"),
    ],
)
def test_invalid_values_name_the_variable(
    settings_factory: Callable[..., Settings], field: str, value: object, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        settings_factory(**{field: value})


def test_all_problems_are_reported_at_once(settings_factory: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        settings_factory(kafka_bootstrap_servers="x", ingest_partitions=-1)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(info.value)
    assert "INGEST_PARTITIONS" in str(info.value)


def test_sasl_needs_credentials(settings_factory: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="ACTIVATION_KAFKA_SASL_USERNAME"):
        settings_factory(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN")


def test_secrets_never_appear_in_messages(settings_factory: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        settings_factory(kafka_sasl_password=12345678, kafka_replication_factor=0)
    assert "12345678" not in str(info.value)


def test_binding_every_interface_needs_an_advertised_host(
    settings_factory: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError, match="ACTIVATION_WORKER_ADVERTISED_HOST"):
        settings_factory(worker_web_host="0.0.0.0")  # noqa: S104
    settings = settings_factory(worker_web_host="0.0.0.0",  # noqa: S104
                                worker_advertised_host="worker-2")
    assert settings.advertised_host == "worker-2"
    assert settings_factory().advertised_host == "127.0.0.1"


def test_sasl_config_reaches_the_kafka_client(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="s3cr3t-pw",
    )
    conf = settings.kafka_client_config()
    assert conf["sasl.password"] == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(settings)
