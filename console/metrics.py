"""The console's metrics, on one injected registry (``/metrics``, admin key)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("console_requests", "Requests by route and status",
                                ["route", "status"], registry=registry)
        self.logins = Counter("console_logins", "Sign-in attempts by result (ok, refused)",
                              ["result"], registry=registry)
        self.sessions = Gauge("console_sessions", "Open sessions", registry=registry)
        self.live_listeners = Gauge("console_live_listeners", "Open live-event streams",
                                    registry=registry)
        self.live_skipped = Gauge("console_live_skipped",
                                  "Ingestion records not shown (over the live rate)",
                                  registry=registry)
        self.changes = Counter("console_state_changes", "Changes made from the console "
                               "(redrive, undo_merge, enable_destination)", ["action"],
                               registry=registry)
        self.refused = Counter("console_state_changes_refused", "State changes refused "
                               "(no admin scope, or no CSRF token)", ["reason"],
                               registry=registry)
