"""Readable compatibility verdicts: which field broke which rule, and why.

The registry's verdict is authoritative but terse ("incompatible"). This module
diffs two schemas field by field and names each change that violates a rule:

* BACKWARD: consumers on the *new* schema must read data written with the old.
* FORWARD:  consumers still on the *old* schema must read data written with the new.
* FULL:     both. ``*_TRANSITIVE`` applies the rule against every earlier version.

Apache Avro's own ``ReaderWriterCompatibilityChecker`` gives the verdict per
pair; the diff gives the explanation. Pure functions, no registry access.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
# writer type -> reader types that can read it (Avro's promotion rules)
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


@dataclass(frozen=True)
class Change:
    """One difference between an old and a new schema, and who it breaks."""

    path: str
    detail: str
    breaks_backward: bool
    breaks_forward: bool


def directions(level: str) -> tuple[bool, bool]:
    """(check backward, check forward) for a compatibility level."""
    base = level.removesuffix("_TRANSITIVE")
    return base in ("BACKWARD", "FULL"), base in ("FORWARD", "FULL")


def violations(old_text: str, new_text: str, level: str) -> list[str]:
    """Every reason the new schema breaks ``level`` against the old one (empty: fine)."""
    check_back, check_fwd = directions(level)
    if not (check_back or check_fwd):
        return []
    reasons = [
        f"{c.path}: {c.detail} (breaks {_rule(c, check_back, check_fwd)})"
        for c in diff(json.loads(old_text), json.loads(new_text))
        if (check_back and c.breaks_backward) or (check_fwd and c.breaks_forward)
    ]
    if reasons:
        return reasons
    # The diff is a readable approximation; Avro's checker is the reference.
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    old, new = avro_parse(old_text), avro_parse(new_text)
    pairs = ([("BACKWARD", new, old)] if check_back else []) + (
        [("FORWARD", old, new)] if check_fwd else []
    )
    for rule, reader, writer in pairs:
        result = checker.get_compatibility(reader, writer)
        if result.compatibility is not SchemaCompatibilityType.compatible:
            where = ", ".join(sorted(result.locations))
            what = "; ".join(sorted(result.messages))
            reasons.append(f"{where}: {what} (breaks {rule})")
    return reasons


def _rule(change: Change, check_back: bool, check_fwd: bool) -> str:
    rules = []
    if check_back and change.breaks_backward:
        rules.append("BACKWARD: new consumers cannot read old data")
    if check_fwd and change.breaks_forward:
        rules.append("FORWARD: old consumers cannot read new data")
    return " and ".join(rules)


def diff(old: Any, new: Any) -> list[Change]:
    """Field-level changes from ``old`` to ``new`` (expanded JSON schemas)."""
    return list(_Differ(old, new).walk(old, new, "$"))


class _Differ:
    def __init__(self, old: Any, new: Any) -> None:
        self.old_named = _named_types(old)
        self.new_named = _named_types(new)
        self._seen: set[tuple[str, str]] = set()

    def resolve(self, node: Any, named: dict[str, Any]) -> Any:
        if isinstance(node, str) and node not in PRIMITIVES:
            return named.get(node, node)
        if isinstance(node, dict) and isinstance(node.get("type"), str) and node["type"] in named:
            return named[node["type"]]
        return node

    def walk(self, old: Any, new: Any, path: str) -> Iterator[Change]:
        old, new = self.resolve(old, self.old_named), self.resolve(new, self.new_named)
        o_kind, n_kind = _kind(old), _kind(new)
        if isinstance(old, list) or isinstance(new, list):
            yield from self.walk_union(old, new, path)
        elif o_kind != n_kind:
            yield self.type_change(o_kind, n_kind, path)
        elif o_kind == "record":
            key = (_fullname(old), path)
            if key not in self._seen:  # recursive types: visit each record once per path
                self._seen.add(key)
                yield from self.walk_record(old, new, path)
        elif o_kind == "enum":
            yield from _enum_changes(old, new, path)
        elif o_kind == "array":
            yield from self.walk(old["items"], new["items"], f"{path}[]")
        elif o_kind == "map":
            yield from self.walk(old["values"], new["values"], f"{path}{{}}")

    def walk_record(self, old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[Change]:
        old_fields = {f["name"]: f for f in old.get("fields", [])}
        new_fields = {f["name"]: f for f in new.get("fields", [])}
        for name, field in new_fields.items():
            if name not in old_fields:
                has_default = "default" in field
                detail = "field added " + ("with a default" if has_default else "WITHOUT a default")
                yield Change(f"{path}.{name}", detail, not has_default, False)
        for name, field in old_fields.items():
            if name not in new_fields:
                had_default = "default" in field
                detail = "field removed" + ("" if had_default else " that had no default")
                yield Change(f"{path}.{name}", detail, False, not had_default)
            else:
                yield from self.walk(field["type"], new_fields[name]["type"], f"{path}.{name}")

    def walk_union(self, old: Any, new: Any, path: str) -> Iterator[Change]:
        old_b = {_kind_name(self.resolve(b, self.old_named)): b for b in _branches(old)}
        new_b = {_kind_name(self.resolve(b, self.new_named)): b for b in _branches(new)}
        for name in new_b.keys() - old_b.keys():
            yield Change(path, f"union branch {name} added", False, True)
        for name in old_b.keys() - new_b.keys():
            yield Change(path, f"union branch {name} removed", True, False)
        for name in old_b.keys() & new_b.keys():
            yield from self.walk(old_b[name], new_b[name], path)

    def type_change(self, old_kind: str, new_kind: str, path: str) -> Change:
        backward_ok = new_kind in PROMOTIONS.get(old_kind, set())
        forward_ok = old_kind in PROMOTIONS.get(new_kind, set())
        detail = f"type changed from {old_kind} to {new_kind}"
        return Change(path, detail, not backward_ok, not forward_ok)


def _enum_changes(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[Change]:
    removed = [s for s in old["symbols"] if s not in new["symbols"]]
    added = [s for s in new["symbols"] if s not in old["symbols"]]
    if removed:
        detail = f"enum symbols removed: {', '.join(removed)}"
        yield Change(path, detail, "default" not in new, False)
    if added:
        detail = f"enum symbols added: {', '.join(added)}"
        yield Change(path, detail, False, "default" not in old)


def _named_types(schema: Any, acc: dict[str, Any] | None = None, ns: str = "") -> dict[str, Any]:
    acc = {} if acc is None else acc
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, acc, ns)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            fullname = _fullname(schema, ns)
            acc.setdefault(fullname, schema)
            ns = fullname.rsplit(".", 1)[0] if "." in fullname else ns
            for field in schema.get("fields", []):
                _named_types(field["type"], acc, ns)
        elif kind == "array":
            _named_types(schema["items"], acc, ns)
        elif kind == "map":
            _named_types(schema["values"], acc, ns)
        elif isinstance(kind, (dict, list)):
            _named_types(kind, acc, ns)
    return acc


def _fullname(schema: dict[str, Any], ns: str = "") -> str:
    name = str(schema.get("name", ""))
    if "." in name:
        return name
    namespace = schema.get("namespace", ns)
    return f"{namespace}.{name}" if namespace else name


def _branches(node: Any) -> list[Any]:
    return node if isinstance(node, list) else [node]


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    kind = node.get("type")
    if isinstance(kind, (dict, list)):
        return _kind(kind)
    logical = node.get("logicalType")
    return f"{kind}:{logical}" if logical and kind in PRIMITIVES else str(kind)


def _kind_name(node: Any) -> str:
    """Union branches match by full name for named types, by kind otherwise."""
    if isinstance(node, dict) and node.get("type") in ("record", "enum", "fixed"):
        return _fullname(node)
    return _kind(node)
