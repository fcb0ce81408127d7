"""Readable compatibility explanations: which field broke which rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.schema_compat import diff, violations


def record(*fields: dict[str, Any], name: str = "R") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "t", "fields": list(fields)})


BASE = record({"name": "id", "type": "string"}, {"name": "n", "type": "int"})


def test_identical_schemas_have_no_violations() -> None:
    assert violations(BASE, BASE, "FULL_TRANSITIVE") == []


def test_added_field_with_default_is_fine_both_ways() -> None:
    new = record(
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "x", "type": ["null", "string"], "default": None},
    )
    assert violations(BASE, new, "FULL") == []


def test_added_field_without_default_breaks_backward_and_says_which() -> None:
    new = record(
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "tenant", "type": "string"},
    )
    [reason] = violations(BASE, new, "BACKWARD")
    assert "$.tenant" in reason and "WITHOUT a default" in reason and "BACKWARD" in reason
    assert violations(BASE, new, "FORWARD") == []


def test_removed_field_without_default_breaks_forward_only() -> None:
    new = record({"name": "id", "type": "string"})
    assert violations(BASE, new, "BACKWARD") == []
    [reason] = violations(BASE, new, "FORWARD")
    assert "$.n" in reason and "removed" in reason


@pytest.mark.parametrize(
    "old,new,level,broken",
    [
        ("int", "long", "BACKWARD", False),  # promotion: new readers read old ints
        ("int", "long", "FORWARD", True),  # old readers cannot read longs
        ("string", "int", "BACKWARD", True),
    ],
)
def test_type_changes_follow_promotion_rules(old: str, new: str, level: str, broken: bool) -> None:
    before = record({"name": "v", "type": old})
    after = record({"name": "v", "type": new})
    assert bool(violations(before, after, level)) is broken


def test_new_union_branch_is_backward_but_not_forward_compatible() -> None:
    a = {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]}
    b = {"type": "record", "name": "B", "fields": [{"name": "b", "type": "int"}]}
    before = record({"name": "p", "type": ["null", a], "default": None})
    after = record({"name": "p", "type": ["null", a, b], "default": None})
    assert violations(before, after, "BACKWARD") == []
    [reason] = violations(before, after, "FORWARD")
    assert "union branch" in reason and "B added" in reason


def test_nested_record_changes_are_located_by_path() -> None:
    inner_old = {"type": "record", "name": "I", "fields": [{"name": "q", "type": "int"}]}
    inner_new = {
        "type": "record",
        "name": "I",
        "fields": [{"name": "q", "type": "int"}, {"name": "r", "type": "string"}],
    }
    changes = diff(
        json.loads(record({"name": "i", "type": inner_old})),
        json.loads(record({"name": "i", "type": inner_new})),
    )
    assert [c.path for c in changes] == ["$.i.r"]


def test_enum_symbol_removal_needs_a_default_for_backward() -> None:
    enum = {"type": "enum", "name": "S", "symbols": ["A", "B"]}
    fewer = {"type": "enum", "name": "S", "symbols": ["A"]}
    [reason] = violations(
        record({"name": "s", "type": enum}), record({"name": "s", "type": fewer}), "BACKWARD"
    )
    assert "enum symbols removed: B" in reason


def test_none_level_allows_anything() -> None:
    assert violations(BASE, record({"name": "z", "type": "bytes"}), "NONE") == []
