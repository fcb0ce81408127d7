"""Errors raised by the SDK (it is installed without the platform, so it has its own root)."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Root of every error the SDK raises on purpose."""


class InvalidEventError(ClientError, ValueError):
    """The event breaks the contract; found locally, nothing was sent."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class RejectedError(ClientError):
    """The gateway refused the request for good (400, 401, 403, 413, 415): never retried."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"gateway answered {status}: {body}")


class RetriesExhaustedError(ClientError):
    """Every attempt failed with a retryable answer (429, 5xx) or a connection error."""

    def __init__(self, attempts: int, last: str) -> None:
        self.attempts = attempts
        self.last = last
        super().__init__(f"gave up after {attempts} attempts; last: {last}")
