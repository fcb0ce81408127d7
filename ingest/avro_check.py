"""Check JSON values against the Avro types of the typed payload records.

The rules are read from the same ``.avsc`` files the encoder uses, so a new
optional field in a payload record is accepted by the gateway without a code
change. Values come from ``json.loads(..., parse_float=Decimal)`` so money
arrives exactly.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

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


class PayloadRules:
    """The fields of each known event's payload record, from the schema catalog."""

    def __init__(self, fields: dict[str, list[Field]]) -> None:
        self.fields = fields

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
        for name, avro_type, has_default in self.fields[event]:
            where = f"{path}.{name}"
            if name not in rest or rest[name] is None:
                rest.pop(name, None)
                if not has_default and not _nullable(avro_type):
                    problems.append(Problem(where, f"required: {describe(avro_type)}"))
                payload[name] = [] if _is_array(avro_type) else None
                continue
            value = coerce(avro_type, rest.pop(name), where, problems)
            rule = _PATTERNS.get((event, name))
            if rule and isinstance(value, str) and not rule[0].match(value):
                problems.append(Problem(where, f"expected {rule[1]}"))
            payload[name] = value
        return payload, rest


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
        return _decimal(avro_type, value, path, problems)
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


def _decimal(avro_type: dict[str, Any], value: Any, path: str, problems: list[Problem]) -> Any:
    scale = int(avro_type.get("scale", 0))
    precision = int(avro_type["precision"])
    number: Decimal | None = None
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite():
        problems.append(Problem(path, f"expected {describe(avro_type)}"))
        return None
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -scale:
        problems.append(Problem(path, f"at most {scale} decimal places"))
        return None
    quantized = number.quantize(Decimal(1).scaleb(-scale))
    if len(quantized.as_tuple().digits) > precision:
        problems.append(Problem(path, f"at most {precision - scale} digits before the point"))
        return None
    return quantized
