"""The executor's metrics, on one injected registry. Labels: destination ids (a handful,
declared in definitions), statuses and result classes; never action or profile ids."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                   1800, 7200, 86400)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "delivery_attempts", "HTTP attempts by destination and result class "
            "(2xx, 4xx, 5xx, 429, 410, timeout, error)", ["destination", "result"],
            registry=registry)
        self.outcomes = Counter(
            "delivery_outcomes", "Outcomes recorded by destination and status (delivered, "
            "retrying, failed, dead_lettered, disabled)", ["destination", "status"],
            registry=registry)
        self.request_seconds = Histogram(
            "delivery_request_seconds", "Duration of one HTTP attempt", ["destination"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.latency_seconds = Histogram(
            "delivery_latency_seconds", "From the command's decision to its 2xx",
            ["destination"], buckets=LATENCY_BUCKETS, registry=registry)
        self._declare_lane_gauges(registry)
        self.commits = Counter("delivery_commits", "Transactions committed (outcomes with "
                               "the input offsets they settle)", registry=registry)
        self.commit_failures = Counter("delivery_commit_failures",
                                       "Transactions aborted", registry=registry)
        self.dead_letters = Counter("delivery_dead_letters",
                                    "Commands dead-lettered, by reason",
                                    ["reason"], registry=registry)
        self.unrouted = Counter("delivery_unrouted", "Commands no destination takes, by "
                                "channel (nothing is sent for them)", ["channel"],
                                registry=registry)
        self.lag = Gauge("delivery_consumer_lag", "Action-topic records the executors' group "
                         "has not committed yet (read every 15 s)", registry=registry)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _declare_lane_gauges(self, registry: CollectorRegistry) -> None:
        """The per-destination lane gauges (and the retries waiting), sampled by the
        service every half second."""
        self.in_flight = Gauge("delivery_in_flight", "Requests under way", ["destination"],
                               registry=registry)
        self.queued = Gauge("delivery_queued", "Jobs waiting for a lane worker",
                            ["destination"], registry=registry)
        self.waiting = Gauge("delivery_retries_waiting",
                             "Jobs waiting for their next attempt (held in memory)",
                             registry=registry)
        self.breaker_open = Gauge("delivery_circuit_open",
                                  "1 while a destination's circuit is open", ["destination"],
                                  registry=registry)
        self.disabled = Gauge("delivery_destination_disabled",
                              "1 while a destination is disabled (410 or by hand)",
                              ["destination"], registry=registry)

    def of(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: several per action, and ``labels()``
        (a lock and a tuple each time) was a few percent of the executor's time."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def result_class(status: int | None, error: str | None) -> str:
    if status is None:
        return "timeout" if error == "timeout" else "error"
    if status in (410, 429):
        return str(status)
    return f"{status // 100}xx"
