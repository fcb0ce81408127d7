"""Activation's counters, incremented through children looked up once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.metrics import ActivationMetrics


def test_inc_counts_each_label_set_apart() -> None:
    registry = CollectorRegistry()
    metrics = ActivationMetrics(registry)
    for _ in range(3):
        metrics.inc(metrics.audience_changes, "vip", "entered")
    metrics.inc(metrics.audience_changes, "vip", "exited")
    metrics.inc(metrics.actions, "email", "withheld")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("activation_audience_changes_total", audience="vip", change="entered") == 3
    assert value("activation_audience_changes_total", audience="vip", change="exited") == 1
    assert value("activation_actions_total", channel="email", outcome="withheld") == 1
