"""The gateway's Prometheus metrics, all on one injected registry, low-cardinality labels."""

from __future__ import annotations

from collections.abc import Sized

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "ingest_http_requests_total", "HTTP requests by endpoint and status code",
            ["endpoint", "status"], registry=registry,
        )
        self.latency = Histogram(
            "ingest_http_request_seconds", "HTTP request latency by endpoint",
            ["endpoint"], buckets=_LATENCY, registry=registry,
        )
        self.produce_seconds = Histogram(
            "ingest_produce_seconds", "Time from produce() to the broker's acknowledgement",
            buckets=_LATENCY, registry=registry,
        )
        self.batch_events = Histogram(
            "ingest_batch_events", "Events per batch request",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000), registry=registry,
        )
        self.events = Counter(
            "ingest_events_total", "Events by outcome (accepted, invalid, failed, duplicate)",
            ["outcome"], registry=registry,
        )
        self.cache_entries = Gauge(
            "ingest_idempotency_cache_entries", "Idempotency answers held (about 0.5 KB each; "
            "bounded by ACTIVATION_GATEWAY_IDEMPOTENCY_MAX_ENTRIES)", registry=registry)
        # labels() takes a lock and builds a key on every call: the few label values
        # the hot path uses are resolved once.
        self.accepted = self.events.labels("accepted")
        self.duplicates = self.events.labels("duplicate")
        self._per_request: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def watch_cache(self, cache: Sized) -> None:
        """The cache's size, read at each scrape (no work on the request path)."""
        self.cache_entries.set_function(lambda: len(cache))

    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and observe its latency."""
        children = self._per_request.get((endpoint, status))
        if children is None:
            children = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._per_request[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(seconds)
