"""Jinja2 templates (autoescaped: every value a record carries is shown as text) and the
small formatting helpers they use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

SPARK_W, SPARK_H = 160, 28


def templates() -> Environment:
    env = Environment(loader=PackageLoader("console", "templates"),
                      autoescape=select_autoescape(["html"], default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, ago=ago, short=short, spark=sparkline, duration=duration)
    return env


def when(value: datetime | str | None) -> str:
    """UTC, to the second: every operator reads the same instant the same way."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if value.tzinfo is None:
        return value.isoformat(sep=" ", timespec="seconds") + " (no zone)"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(value: timedelta) -> str:
    """``7 days``, ``36 hours``, ``90 minutes``: the unit that says it whole."""
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def short(value: Any, length: int = 12) -> str:
    text = str(value or "")
    return text if len(text) <= length + 1 else text[:length] + "…"


def sparkline(points: list[int], width: int = SPARK_W, height: int = SPARK_H) -> str:
    """An SVG polyline's ``points`` attribute for ``points`` (oldest first)."""
    if not points:
        return ""
    low, high = min(0, *points), max(1, *points)
    step = width / max(1, len(points) - 1)
    scale = (height - 2) / (high - low)
    return " ".join(f"{i * step:.1f},{height - 1 - (p - low) * scale:.1f}"
                    for i, p in enumerate(points))
