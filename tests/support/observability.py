"""The metric names the alert rules and the dashboard use, and the ones a process
declares on its /metrics page (``# TYPE`` lines: a labelled family is declared before
its first sample)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2] / "observability"
_NAME = re.compile(r"\b((?:ingest|activation|delivery)_[a-z0-9_]+)\b")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def expressions() -> list[str]:
    rules = yaml.safe_load((ROOT / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "activation.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs


def referenced() -> set[str]:
    return {name for expr in expressions() for name in _NAME.findall(expr)}


def declared(metrics_text: str) -> set[str]:
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            names.update(name + s for s in _SUFFIXES.get(kind, ()))
    return names
