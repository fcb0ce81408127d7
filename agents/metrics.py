"""Prometheus metrics of the stream core, on the app's one injected registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# (counter, its label values) -> how much to add: a transaction's counts, added at once.
Tally = Mapping[tuple[Counter, tuple[str, ...]], int]

# Seconds, from sub-second to days: event time can be far behind (late events, backfills).
_DELAY = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400, 7 * 86400)
STAGES = ("stream.screen", "stream.identity", "stream.profile")


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
        self.commits = Counter(
            "activation_stage_commits", "Input records a stage committed (done with).",
            ["stage"], registry=registry)
        self.transactions = Counter(
            "activation_stage_transactions", "Transactions a stage committed (a partition's "
            "consecutive records share one, agents/owned.py).", ["stage"], registry=registry)
        self.lag = Gauge(
            "activation_consumer_lag", "Input records a stage's group has not committed yet, "
            "summed over partitions (read every 15 s).", ["stage"], registry=registry)
        self.matches = Counter(
            "activation_profile_matches", "Events applied to an existing profile or creating "
            "a new one (the match rate).", ["result"], registry=registry)
        self.protocol_messages = Counter(
            "activation_identity_protocol_messages", "Messages the partitioned identity "
            "stage sent between its slots (ACTIVATION_IDENTITY_PARTITIONS > 1), by kind: "
            "tickets travelling, locks released, undo steps.", ["kind"], registry=registry)
        self.protocol_pending = Gauge(
            "activation_identity_protocol_pending", "What the partitioned identity stage "
            "holds open in this worker's slots, read every 15 s: locks (profiles locked by "
            "a ticket), home_guards (events undecided: tickets in flight), claims "
            "(unknown keys reserved), waiters (parked behind one of those). Steadily "
            "non-zero means a ticket is stuck.", ["kind"], registry=registry)
        self._declare_stages()

    def _declare_stages(self) -> None:
        """Each stage's retries, commits and lag declared with a value (0), so a quiet
        stage still shows."""
        for stage in STAGES:
            self.retries.labels(stage)
            self.commits.labels(stage)
            self.transactions.labels(stage)
            self.lag.labels(stage)


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
        self.event_to_decision = Histogram(
            "activation_event_to_decision_seconds", "From an event's time to the decisions "
            "it caused.", buckets=_DELAY, registry=registry)
        self.accepted_to_command = Histogram(
            "activation_accepted_to_command_seconds", "From the gateway's acceptance of an "
            "event to the action commands it caused.", buckets=_DELAY, registry=registry)
        self.step_decisions = Counter(
            "activation_journey_step_decisions", "Decisions per journey step and outcome "
            "(the funnel: entered, each step, withheld by rule).",
            ["journey", "step", "outcome"], registry=registry)
        self.assignments = Counter(
            "activation_experiment_assignments", "Profiles sent down a variant of a journey's "
            "split step (experiments: compare outcomes per variant).",
            ["journey", "step", "variant"], registry=registry)
        self.writes = Counter(
            "activation_profile_writes", "Data actions applied to profiles (set, clear, "
            "increment a trait).", ["op"], registry=registry)
        self._children: dict[tuple[Counter, tuple[str, ...]], Any] = {}

    def inc(self, counter: Counter, *labels: str) -> None:
        """``counter.labels(*labels).inc()``: :meth:`add` of one."""
        self.add({(counter, labels): 1})

    def add(self, counts: Tally) -> None:
        """Each ``(counter, labels)`` child incremented by its amount, the child looked
        up once: ``labels()`` validates and takes the metric's lock on every call.
        (The children are never removed, and their labels are bounded.)"""
        children = self._children
        for (counter, labels), amount in counts.items():
            child = children.get((counter, labels))
            if child is None:
                child = children[(counter, labels)] = counter.labels(*labels)
            child.inc(amount)
