"""The gateway's error family, under the platform root :class:`ActivationError`::

    ActivationError
    └── IngestError                 anything the gateway refuses or cannot do
        ├── InvalidEvent            the payload breaks the contract (HTTP 400); lists problems
        ├── PayloadTooLarge         body or event above the configured limits (HTTP 413)
        ├── AuthError               missing or unknown API key (HTTP 401)
        │   └── ForbiddenScope      the key lacks the scope the endpoint needs (HTTP 403)
        ├── RateLimited             the key's token bucket is empty (HTTP 429)
        └── Unavailable             broker, registry or key store unreachable (HTTP 503)
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.errors import ActivationError


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (a JSON path) and what was expected."""

    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class IngestError(ActivationError):
    """Root of the errors the gateway turns into HTTP answers."""

    status = 500


class InvalidEvent(IngestError):
    status = 400

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))


class PayloadTooLarge(IngestError):
    status = 413


class AuthError(IngestError):
    status = 401


class ForbiddenScope(AuthError):
    status = 403


class RateLimited(IngestError):
    status = 429

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limit exceeded, retry in {retry_after:.2f}s")


class Unavailable(IngestError):
    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)
