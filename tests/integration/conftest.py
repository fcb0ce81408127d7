"""Integration fixtures: one real broker and registry per session, unique names per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings, load_settings
from tests.support.stack import StackHandle, start_stack, wait_ready

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackHandle]:
    mode = request.config.getoption("--stack")
    defaults = load_settings()
    handle = start_stack(mode, (defaults.kafka_bootstrap_servers, defaults.schema_registry_url))
    wait_ready(handle)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"integration stack: {handle.kind} kafka={handle.bootstrap} "
            f"registry={handle.registry_url}"
        )
    yield handle
    handle.stop()


@pytest.fixture
def uid() -> str:
    """A short id unique to this test, for topic, subject and group names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def stack_settings(
    stack: StackHandle, uid: str, settings_factory: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings pointing at the test stack, with a topic prefix and app id unique to the test."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("kafka_bootstrap_servers", stack.bootstrap)
        overrides.setdefault("schema_registry_url", stack.registry_url)
        overrides.setdefault("topic_prefix", f"t{uid}.")
        overrides.setdefault("app_id", f"test-{uid}")
        overrides.setdefault("ingest_partitions", 3)
        overrides.setdefault("action_partitions", 1)
        return settings_factory(**overrides)

    return make


@pytest.fixture
def settings(stack_settings: Callable[..., Settings]) -> Settings:
    return stack_settings()


@pytest.fixture
def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_client_config())


@pytest.fixture
def registry(settings: Settings) -> RegistryClient:
    return RegistryClient(settings.registry_client_config())


@pytest.fixture
def serde(settings: Settings, registry: RegistryClient) -> AvroSerde:
    return AvroSerde(registry, SchemaCatalog.load(settings.schemas_dir))
