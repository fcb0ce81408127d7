"""Activation's counters, incremented through children looked up once, a transaction's
emissions counted at once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.activation import tally
from agents.metrics import ActivationMetrics
from streams.activation.emission import Emission


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


def test_a_transactions_emissions_are_counted_once_per_label_set_by_their_total() -> None:
    registry = CollectorRegistry()
    metrics = ActivationMetrics(registry)
    withheld = {"channel": "email", "outcome": "withheld", "rule": "consent",
                "journey_id": "welcome", "step_id": "mail"}
    emissions = [
        Emission("p1", changes=[{"audience_id": "vip", "change": "entered"}],
                 decisions=[withheld], enrolled=["welcome"]),
        Emission("p2", changes=[{"audience_id": "vip", "change": "entered"},
                                {"audience_id": "new", "change": "exited"}],
                 decisions=[withheld, {**withheld, "outcome": "sent", "rule": "allowed",
                                       "journey_id": None, "step_id": None}],
                 writes=[{"op": "set"}],
                 assignments=[{"journey_id": "welcome", "step_id": "ab", "variant": "a"}]),
    ]
    counts = tally(metrics, emissions)
    assert counts[metrics.audience_changes, ("vip", "entered")] == 2
    assert counts[metrics.actions, ("email", "withheld")] == 2
    assert len(counts) == 9  # one entry per counter and label set
    metrics.add(counts)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("activation_audience_changes_total", audience="vip", change="entered") == 2
    assert value("activation_audience_changes_total", audience="new", change="exited") == 1
    assert value("activation_actions_total", channel="email", outcome="withheld") == 2
    assert value("activation_actions_total", channel="email", outcome="sent") == 1
    assert value("activation_journey_enrollments_total", journey="welcome") == 1
    assert value("activation_suppressions_total", rule="consent") == 2
    assert value("activation_profile_writes_total", op="set") == 1
