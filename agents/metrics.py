"""Prometheus metrics of the stream core, on the app's one injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class StreamMetrics:
    """Counters with low-cardinality labels only (stage, outcome, reason code)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "activation_stream_events", "Records handled, by stage and outcome.",
            ["stage", "outcome"], registry=registry)
        self.duplicates = Counter(
            "activation_stream_duplicates", "Events dropped as exact duplicates (event id).",
            registry=registry)
        self.dead_letters = Counter(
            "activation_stream_dead_letters", "Records sent to the dead-letter topic.",
            ["reason_code"], registry=registry)
        self.purged = Counter(
            "activation_dedup_markers_purged", "Expired dedup markers deleted.",
            registry=registry)
        self.merges = Counter(
            "activation_profile_merges", "Profiles merged into another.", registry=registry)
        self.retries = Counter(
            "activation_stream_retries", "Transient failures retried (registry, broker).",
            ["stage"], registry=registry)


class ActivationMetrics:
    """Activation counters. Labels are definition ids, channels and rule names: bounded
    by the definitions in force, never by customers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.audience_changes = Counter(
            "activation_audience_changes", "Audience entries and exits.",
            ["audience", "change"], registry=registry)
        self.enrollments = Counter(
            "activation_journey_enrollments", "Journey enrollments started.",
            ["journey"], registry=registry)
        self.actions = Counter(
            "activation_actions", "Actions decided, by channel and outcome (sent, delayed, "
            "withheld).", ["channel", "outcome"], registry=registry)
        self.suppressions = Counter(
            "activation_suppressions", "Actions withheld, by the rule that withheld them.",
            ["rule"], registry=registry)
        self.timers = Counter(
            "activation_timers_fired", "Per-profile timers that came due.", registry=registry)
        self.timer_errors = Counter(
            "activation_timer_errors", "Timers dropped because handling them failed (see log).",
            registry=registry)
