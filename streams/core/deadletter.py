"""Building ``io.activation.ops.DeadLetter`` records (pure: the agent sends them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.core.contract import ContractViolation, validate_record
from streams.errors import DecodeError, RegistryError
from streams.records import Envelope

DECODE_ERROR = "decode_error"
CONTRACT_VIOLATION = "contract_violation"
PROCESSING_ERROR = "processing_error"
MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class SourceRecord:
    """Where a record came from and its bytes, exactly as read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Iterable[tuple[str, bytes]] = ()


def dead_letter(
    source: SourceRecord, reason_code: str, reason: str, stage: str, failed_at: datetime,
    redrive_count: int = 0,
) -> dict[str, Any]:
    """The DeadLetter record for ``source``; headers keep the last value of a repeated name."""
    return {
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "original_key": source.key,
        "original_value": source.value,
        "original_headers": {name: bytes(value or b"") for name, value in source.headers},
        "reason_code": reason_code,
        "reason": reason[:MAX_REASON_CHARS],
        "stage": stage,
        "failed_at": failed_at,
        "redrive_count": redrive_count,
    }


@dataclass(frozen=True)
class Screened:
    """A record that passed decoding and the contract, or the dead letter saying why not."""

    envelope: Envelope | None
    dead_letter: dict[str, Any] | None


def screen(
    source: SourceRecord,
    decode: Callable[[bytes | None], tuple[int, dict[str, Any]]],
    now: datetime,
    stage: str,
    redrive_count: int = 0,
) -> Screened:
    """Decode and check one record; poison becomes a dead letter, never an exception.

    :class:`~streams.errors.RegistryError` (registry unreachable) is not the record's
    fault and propagates: the caller retries instead of dead-lettering good data.
    """
    code, reason = PROCESSING_ERROR, ""
    try:
        _, record = decode(source.value)
        return Screened(validate_record(record, now), None)
    except DecodeError as exc:
        code, reason = DECODE_ERROR, str(exc)
    except ContractViolation as exc:
        code, reason = CONTRACT_VIOLATION, str(exc)
    except RegistryError:
        raise
    except Exception as exc:  # a bug or an input nobody foresaw must not stall the partition
        reason = f"{type(exc).__name__}: {exc}"
    return Screened(None, dead_letter(source, code, reason, stage, now, redrive_count))
