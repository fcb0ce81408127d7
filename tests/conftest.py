"""Fixtures shared by every test: settings factories and stack selection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings, load_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack",
        choices=["auto", "local", "docker", "external"],
        default="auto",
        help="where integration tests get Kafka and the registry: testcontainers when a "
        "Docker engine answers (auto), scripts/stack (local), or ACTIVATION_* (external)",
    )


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings with test-local state directories; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "worker")
        return load_settings(**overrides)

    return make
