"""The console's errors, under the platform root::

    ActivationError
    └── ConsoleError            the console cannot do what was asked
        ├── Refused             not signed in (401), or the key lacks the scope (403)
        └── UpstreamError       a worker, the broker or the registry did not answer as
                                expected; the page says which and why
"""

from __future__ import annotations

from streams.errors import ActivationError


class ConsoleError(ActivationError):
    """Root of the console's errors; ``status`` is the HTTP answer it becomes."""

    status = 500


class Refused(ConsoleError):
    """The request needs a session (401) or a scope the key does not have (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamError(ConsoleError):
    """A worker, the broker or the registry failed or answered unexpectedly."""

    status = 502

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status
