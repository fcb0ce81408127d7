"""Check JSON values against the Avro types of the typed payload records.

The rules are read from the same ``.avsc`` files the encoder uses, so a new
optional field in a payload record is accepted by the gateway without a code
change. Values come from ``json.loads(..., parse_float=Decimal)`` so money
arrives exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, NamedTuple

from ingest.errors import Problem
from streams.records import PAYLOAD_TYPES
from streams.schemas import SchemaCatalog

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LONG = (-(2**63), 2**63 - 1)
_INT = (-(2**31), 2**31 - 1)
# Field-level conventions stated in the schema docs that Avro itself cannot express.
_PATTERNS: dict[tuple[str, str], tuple[re.Pattern[str], str]] = {
    ("purchase_completed", "currency"): (re.compile(r"^[A-Z]{3}$"), "an ISO 4217 code (EUR)"),
    ("consent_updated", "consent_type"): (
        re.compile(r"^[a-z0-9_]+:[a-z0-9_]+$"),
        "purpose:channel (marketing:email)",
    ),
}

Field = tuple[str, Any, bool]  # name, Avro type, has a default
Check = Callable[[Any, str, list[Problem]], Any]  # coerce() bound to one Avro type


class _Plan(NamedTuple):
    """One payload field, with everything that does not depend on the value worked out."""

    name: str
    check: Check
    missing: str | None  # the problem when the value is absent; None if it may be
    empty: Callable[[], Any]  # the payload value when absent
    pattern: tuple[re.Pattern[str], str] | None


class PayloadRules:
    """The fields of each known event's payload record, from the schema catalog."""

    def __init__(self, fields: dict[str, list[Field]]) -> None:
        self.fields = fields
        # Compiled once: a request only runs the checks, it does not re-read the types.
        self._plans = {event: [_plan(event, f) for f in event_fields]
                       for event, event_fields in fields.items()}

    @classmethod
    def from_catalog(cls, catalog: SchemaCatalog) -> PayloadRules:
        fields: dict[str, list[Field]] = {}
        for event, type_name in PAYLOAD_TYPES.items():
            record = catalog.expanded(type_name)
            fields[event] = [(f["name"], f["type"], "default" in f) for f in record["fields"]]
        return cls(fields)

    def knows(self, event: str) -> bool:
        return event in self.fields

    def extract(
        self, event: str, properties: dict[str, Any], path: str, problems: list[Problem]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(payload, remaining properties): typed fields move out of ``properties``."""
        payload: dict[str, Any] = {}
        rest = dict(properties)
        for plan in self._plans[event]:
            raw = rest.pop(plan.name, None)
            if raw is None:
                if plan.missing is not None:
                    problems.append(Problem(f"{path}.{plan.name}", plan.missing))
                payload[plan.name] = plan.empty()
                continue
            where = f"{path}.{plan.name}"
            value = plan.check(raw, where, problems)
            rule = plan.pattern
            if rule and isinstance(value, str) and not rule[0].match(value):
                problems.append(Problem(where, f"expected {rule[1]}"))
            payload[plan.name] = value
        return payload, rest


def _plan(event: str, field: Field) -> _Plan:
    name, avro_type, has_default = field
    required = not has_default and not _nullable(avro_type)
    return _Plan(name, compile_check(avro_type),
                 f"required: {describe(avro_type)}" if required else None,
                 list if _is_array(avro_type) else _none, _PATTERNS.get((event, name)))


def _none() -> None:
    return None


def _nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _is_array(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("type") == "array"


def describe(avro_type: Any) -> str:
    """A reader-friendly name of an Avro type for error messages."""
    if isinstance(avro_type, list):
        return " or ".join(describe(t) for t in avro_type)
    if isinstance(avro_type, str):
        return {"long": "integer", "int": "integer", "double": "number", "float": "number"}.get(
            avro_type, avro_type
        )
    logical = avro_type.get("logicalType")
    if logical == "date":
        return "date (YYYY-MM-DD)"
    if logical == "decimal":
        return f"decimal with at most {avro_type.get('scale', 0)} decimal places (string or number)"
    kind = avro_type.get("type")
    if kind == "enum":
        return "one of " + ", ".join(avro_type["symbols"])
    if kind == "array":
        return f"array of {describe(avro_type['items'])}"
    return str(kind)


def coerce(avro_type: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    """The value converted for fastavro, or None with a problem appended."""
    if isinstance(avro_type, list):
        if value is None and "null" in avro_type:
            return None
        branches = [t for t in avro_type if t != "null"]
        if len(branches) == 1:
            return coerce(branches[0], value, path, problems)
        problems.append(Problem(path, f"expected {describe(avro_type)}"))
        return None
    if isinstance(avro_type, str):
        return _primitive(avro_type, value, path, problems)
    logical = avro_type.get("logicalType")
    if logical == "date":
        return _date(value, path, problems)
    if logical == "decimal":
        return _DecimalCheck(avro_type)(value, path, problems)
    kind = avro_type.get("type")
    if kind == "enum":
        if isinstance(value, str) and value in avro_type["symbols"]:
            return value
    elif kind == "array" and isinstance(value, list):
        items = avro_type["items"]
        return [coerce(items, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    elif kind in ("string", "long", "int", "double", "boolean"):
        return _primitive(kind, value, path, problems)
    problems.append(Problem(path, f"expected {describe(avro_type)}"))
    return None


def compile_check(avro_type: Any) -> Check:
    """:func:`coerce` specialised to ``avro_type``: same results, same problems, less
    dispatch per value for the types payloads use most; the rest defer to coerce()."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            return partial(coerce, avro_type)
        inner = compile_check(branches[0])
        if "null" not in avro_type:
            return inner

        def optional(value: Any, path: str, problems: list[Problem]) -> Any:
            return None if value is None else inner(value, path, problems)

        return optional
    if avro_type == "string":
        return _string
    if isinstance(avro_type, dict) and avro_type.get("logicalType") == "decimal":
        return _DecimalCheck(avro_type)
    if isinstance(avro_type, dict) and avro_type.get("type") == "array" and (
        avro_type.get("logicalType") not in ("date", "decimal")
    ):
        return _ArrayCheck(avro_type, compile_check(avro_type["items"]))
    return partial(coerce, avro_type)


def _string(value: Any, path: str, problems: list[Problem]) -> Any:
    if isinstance(value, str):
        return value
    return _primitive("string", value, path, problems)


class _ArrayCheck:
    def __init__(self, avro_type: dict[str, Any], items: Check) -> None:
        self._expected = f"expected {describe(avro_type)}"
        self._items = items

    def __call__(self, value: Any, path: str, problems: list[Problem]) -> Any:
        if not isinstance(value, list):
            problems.append(Problem(path, self._expected))
            return None
        items = self._items
        if items is _string and all(isinstance(v, str) for v in value):
            return list(value)  # the common case, without a path string per item
        return [items(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]


class _DecimalCheck:
    """:func:`_decimal` with the type's scale, precision and messages worked out once."""

    def __init__(self, avro_type: dict[str, Any]) -> None:
        self.scale = int(avro_type.get("scale", 0))
        self.precision = int(avro_type["precision"])
        self.quantum = Decimal(1).scaleb(-self.scale)
        self.expected = f"expected {describe(avro_type)}"

    def __call__(self, value: Any, path: str, problems: list[Problem]) -> Any:
        number: Decimal | None = None
        if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
            try:
                number = Decimal(value)
            except InvalidOperation:
                number = None
        if number is None or not number.is_finite():
            problems.append(Problem(path, self.expected))
            return None
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -self.scale:
            problems.append(Problem(path, f"at most {self.scale} decimal places"))
            return None
        quantized = number.quantize(self.quantum)
        if len(quantized.as_tuple().digits) > self.precision:
            problems.append(Problem(path, f"at most {self.precision - self.scale} digits "
                                    "before the point"))
            return None
        return quantized


def _primitive(kind: str, value: Any, path: str, problems: list[Problem]) -> Any:
    ok = False
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in ("long", "int"):
        low, high = _LONG if kind == "long" else _INT
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    elif kind in ("double", "float"):
        ok = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        value = float(value) if ok else value
    if ok:
        return value
    problems.append(Problem(path, f"expected {describe(kind)}"))
    return None


def _date(value: Any, path: str, problems: list[Problem]) -> date | None:
    if isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(Problem(path, "expected date (YYYY-MM-DD)"))
    return None
