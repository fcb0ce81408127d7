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


# A skipped integration test proves nothing: the session fails if one skips.
_skipped_integration: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "tests/integration" in report.nodeid.replace("\\", "/"):
        _skipped_integration.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_integration and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: {len(_skipped_integration)} integration test(s) skipped; "
                "they must run against the real broker and registry",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
