"""The profile page's view models: timeline entries with their decisions explained.

The profile API returns the timeline newest first: the customer's events and
activation's notes (``kind``: ``event``, ``decision``, ``audience``, ``delivery``). A
decision note's name is ``decision.<outcome>`` (sent, delayed, withheld, cancelled) and
its ``detail`` names the rule, the reason, the journey and step, and the definitions
version; these rows say that in one sentence an operator can read aloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OUTCOME_WORDS = {
    "sent": "sent",
    "delayed": "delayed (held until it may leave)",
    "withheld": "withheld",
    "cancelled": "cancelled",
    "released": "released",
}
KIND_FILTERS = ("all", "event", "decision", "audience", "delivery")


@dataclass(frozen=True)
class Row:
    """One timeline line: what happened, and why for decisions."""

    event_id: str
    kind: str
    name: str
    time: datetime | None
    summary: str
    outcome: str = ""  # sent, delayed, withheld, cancelled; delivered, retrying, ...
    rule: str = ""
    explanation: str = ""
    late: bool = False
    facts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def tone(self) -> str:
        """A CSS class: good, wait, bad or plain."""
        if self.outcome in ("sent", "delivered", "entered", "released"):
            return "good"
        if self.outcome in ("delayed", "retrying"):
            return "wait"
        if self.outcome in ("withheld", "cancelled", "failed", "dead_lettered", "disabled"):
            return "bad"
        return "plain"


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _where(detail: dict[str, Any]) -> str:
    parts = []
    if detail.get("journey_id"):
        step = f", step {detail['step_id']}" if detail.get("step_id") else ""
        parts.append(f"journey {detail['journey_id']}{step}")
    if detail.get("definitions_version"):
        parts.append(f"definitions {str(detail['definitions_version'])[:12]}")
    return f" ({'; '.join(parts)})" if parts else ""


def explain_decision(outcome: str, detail: dict[str, Any]) -> str:
    """``email withheld by rule consent: no email consent (journey churn, step reminder)``."""
    channel = detail.get("channel", "action")
    rule, reason = detail.get("rule", ""), detail.get("reason", "")
    words = OUTCOME_WORDS.get(outcome, outcome)
    if outcome == "sent" and rule in ("", "allowed"):
        verdict = f"{channel} {words}: every rule allowed it"
    else:
        verdict = f"{channel} {words} by rule {rule or '?'}" + (f": {reason}" if reason else "")
    if detail.get("not_before"):
        verdict += f"; not before {detail['not_before']}"
    return verdict + _where(detail)


def _facts(detail: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in sorted(detail.items()) if v not in (None, "")]


def row(item: dict[str, Any]) -> Row:
    """A row from one item of ``GET /v1/profiles/{id}/timeline``."""
    kind = str(item.get("kind", "event"))
    name = str(item.get("event_name", ""))
    detail = item.get("detail") or {}
    suffix = name.split(".", 1)[1] if "." in name else ""
    summary = str(item.get("summary", ""))
    if kind == "decision":
        outcome, rule, explanation = suffix, str(detail.get("rule", "")), \
            explain_decision(suffix, detail)
    elif kind == "audience":
        outcome, rule, explanation = suffix, "", summary + _where(detail)
    elif kind == "delivery":
        outcome, rule, explanation = suffix, "", summary
    else:
        outcome, rule, explanation = "", "", summary
    return Row(event_id=str(item.get("event_id", "")), kind=kind, name=name,
               time=_time(item.get("time")), summary=summary, outcome=outcome, rule=rule,
               explanation=explanation, late=bool(item.get("late")), facts=_facts(detail))


def rows(items: list[dict[str, Any]], kind: str = "all") -> list[Row]:
    out = [row(i) for i in items]
    return out if kind in ("", "all") else [r for r in out if r.kind == kind]


@dataclass(frozen=True)
class Held:
    """An action held by the platform (quiet hours), decided again when due."""

    action_id: str
    channel: str
    action_type: str
    journey: str
    not_before: datetime | None


def held(activation: dict[str, Any]) -> list[Held]:
    return [Held(str(h.get("action_id", "")), str(h.get("channel", "")),
                 str(h.get("action_type", "")),
                 f"{h.get('journey_id') or '-'} / {h.get('step_id') or '-'}",
                 _time(h.get("not_before"))) for h in activation.get("held", [])]
