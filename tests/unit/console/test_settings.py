"""The console's settings: defaults that work with ``make run``, TLS given whole."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.settings import load_settings


def test_defaults_point_at_the_local_worker() -> None:
    settings = load_settings()
    assert settings.console_port == 8088 and settings.console_host == "127.0.0.1"
    assert settings.console_workers == ["http://127.0.0.1:6066"]
    assert load_settings(console_worker_urls=["http://w1:6066/", "http://w2:6066"]
                         ).console_workers == ["http://w1:6066", "http://w2:6066"]
    assert load_settings(console_stats_window="3600").console_stats_window.total_seconds() \
        == 3600


def test_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match="CONSOLE_TLS_KEYFILE"):
        load_settings(console_tls_certfile="/tmp/cert.pem")
