"""Each journey's funnel, from the workers' own counters (their ``/metrics``, admin
scope): entered (``activation_journey_enrollments_total``), then per step the decisions
made (``activation_journey_step_decisions_total{journey,step,outcome}``: sent, delayed,
withheld, cancelled), and the actions withheld by each rule
(``activation_suppressions_total{rule}``, every journey and channel together: the
workers count rules without the journey).

The counters are summed over every worker configured (each counts what it decided) and
count since each worker's start, which the page says. Exits are not counted by the
workers, so the funnel shows none rather than a guess.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from streams.activation.definitions import DefinitionSet

ENROLLMENTS = "activation_journey_enrollments"
STEP_DECISIONS = "activation_journey_step_decisions"
SUPPRESSIONS = "activation_suppressions"
OUTCOMES = ("sent", "delayed", "withheld", "cancelled")


@dataclass
class Counters:
    """The funnel's counters summed over the workers' pages."""

    enrollments: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    steps: dict[tuple[str, str, str], float] = field(
        default_factory=lambda: defaultdict(float))
    withheld_by_rule: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    workers_read: int = 0
    workers_missing: list[str] = field(default_factory=list)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.endswith("_total")]


def parse(pages: list[tuple[str, str | None]]) -> Counters:
    """(worker URL, metrics text or None) -> summed counters."""
    out = Counters()
    for url, text in pages:
        if text is None:
            out.workers_missing.append(url)
            continue
        out.workers_read += 1
        for name, labels, value in _samples(text):
            base = name.removesuffix("_total")
            if base == ENROLLMENTS:
                out.enrollments[labels.get("journey", "")] += value
            elif base == STEP_DECISIONS:
                key = (labels.get("journey", ""), labels.get("step", ""),
                       labels.get("outcome", ""))
                out.steps[key] += value
            elif base == SUPPRESSIONS:
                out.withheld_by_rule[labels.get("rule", "")] += value
    return out


@dataclass(frozen=True)
class StepLine:
    step_id: str
    kind: str
    outcomes: dict[str, int]


@dataclass(frozen=True)
class Funnel:
    journey_id: str
    description: str
    entered: int
    steps: list[StepLine]


def funnels(counters: Counters, definitions: DefinitionSet | None) -> list[Funnel]:
    """One funnel per journey in force, its steps in their defined order (a journey
    only the counters know, one no longer defined, follows with its steps as counted)."""
    known = dict(sorted(definitions.journeys.items())) if definitions else {}
    names = list(known) + sorted({j for j, _, _ in counters.steps} - set(known)
                                 | set(counters.enrollments) - set(known))
    out = []
    for jid in names:
        journey = known.get(jid)
        order = [(s.id, s.kind) for s in journey.steps] if journey else sorted(
            {(s, "send") for j, s, _ in counters.steps if j == jid})
        lines = [StepLine(sid, kind, {o: int(counters.steps.get((jid, sid, o), 0))
                                      for o in OUTCOMES}) for sid, kind in order]
        out.append(Funnel(jid, journey.description if journey else "(no longer defined)",
                          int(counters.enrollments.get(jid, 0)), lines))
    return out
