"""The dashboard and the alert rules parse and name only the platform's metrics (that
running processes export them is checked in tests/integration/core/
test_delivery_end_to_end.py; promtool checks the rules: scripts/observability-check)."""

from __future__ import annotations

from tests.support.observability import declared, expressions, referenced


def test_rules_and_dashboard_name_metrics() -> None:
    assert len(expressions()) >= 30
    names = referenced()
    assert {"ingest_http_requests_total", "activation_actions_total",
            "delivery_outcomes_total", "delivery_latency_seconds_bucket"} <= names


def test_declared_names_include_histogram_series() -> None:
    text = "# HELP x h\n# TYPE x histogram\n# TYPE y_total counter\n"
    assert declared(text) == {"x", "x_bucket", "x_sum", "x_count", "y_total"}
