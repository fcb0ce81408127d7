"""What changes between two definition sets (``scripts/definitions diff``): per kind,
the ids added, removed and changed, with a unified diff of each changed item's
canonical JSON (the form the version hash is computed over). Pure."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel

from streams.activation.definitions import DefinitionSet

KINDS = ("audiences", "journeys", "destinations", "schedules")


def _doc(model: BaseModel) -> list[str]:
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(data, indent=2, sort_keys=True).splitlines()


def _kind(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for item in sorted(old.keys() | new.keys()):
        if item not in old:
            lines.append(f"+ {kind}/{item}")
        elif item not in new:
            lines.append(f"- {kind}/{item}")
        elif old[item] != new[item]:
            lines.append(f"~ {kind}/{item}")
            lines += ["    " + d for d in difflib.unified_diff(
                _doc(old[item]), _doc(new[item]), "before", "after", lineterm="", n=1)]
    return lines


def diff(old: DefinitionSet, new: DefinitionSet) -> list[str]:
    """Lines describing the change from ``old`` to ``new``; empty when the same."""
    if old.version == new.version:
        return []
    lines = [f"version {old.version} -> {new.version}"]
    for kind in KINDS:
        lines += _kind(kind, getattr(old, kind), getattr(new, kind))
    # The channels in force: a set without channel files has the built-in ones.
    lines += _kind("channels", dict(old.all_channels), dict(new.all_channels))
    if _doc(old.governance) != _doc(new.governance):  # its own rules, not the channels'
        lines.append("~ governance")
        lines += ["    " + d for d in difflib.unified_diff(
            _doc(old.governance), _doc(new.governance), "before", "after", lineterm="", n=1)]
    return lines
