"""Loading the ``.avsc`` files: one named type per file, composed into full schemas.

Files reference each other by full name. :class:`SchemaCatalog` indexes every
file and *expands* a top-level type into one self-contained schema (each named
type defined at its first use, referenced by name afterwards). That expanded
form is what gets registered, so any Confluent-compatible consumer can read our
topics without support for schema references.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from streams.errors import SchemaParseError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
JsonSchema = dict[str, Any] | list[Any] | str


@dataclass(frozen=True)
class SchemaFile:
    """One parsed ``.avsc`` file."""

    fullname: str
    path: Path
    definition: dict[str, Any]


def _fullname(definition: dict[str, Any], path: Path) -> str:
    name = definition.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaParseError(f"{path}: a top-level named type needs a 'name'")
    if "." in name:
        return name
    namespace = definition.get("namespace")
    if not namespace:
        raise SchemaParseError(f"{path}: '{name}' has no namespace; every type must have one")
    return f"{namespace}.{name}"


def read_schema_file(path: Path) -> SchemaFile:
    """Parse one file as JSON and check it declares exactly one named type."""
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SchemaParseError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(definition, dict) or definition.get("type") not in {
        "record",
        "enum",
        "fixed",
    }:
        raise SchemaParseError(f"{path}: must hold one named type (record, enum or fixed)")
    return SchemaFile(_fullname(definition, path), path, definition)


class SchemaCatalog:
    """All named types under a directory, addressable by full name."""

    def __init__(self, files: dict[str, SchemaFile]) -> None:
        self._files = files
        self._parsed: dict[str, Any] = {}

    @classmethod
    def load(cls, directory: Path) -> SchemaCatalog:
        files: dict[str, SchemaFile] = {}
        for path in sorted(directory.rglob("*.avsc")):
            schema_file = read_schema_file(path)
            if schema_file.fullname in files:
                other = files[schema_file.fullname].path
                raise SchemaParseError(f"{path}: {schema_file.fullname} is also defined in {other}")
            files[schema_file.fullname] = schema_file
        if not files:
            raise SchemaParseError(f"{directory}: no .avsc files found")
        return cls(files)

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def file(self, fullname: str) -> SchemaFile:
        try:
            return self._files[fullname]
        except KeyError:
            raise SchemaParseError(f"unknown Avro type {fullname!r}") from None

    def expanded(self, fullname: str) -> dict[str, Any]:
        """The self-contained JSON schema of a named type, references inlined once."""
        result = _Expander(self).expand_named(fullname)
        assert isinstance(result, dict)  # noqa: S101 - a named type always expands to a dict
        return result

    def schema_str(self, fullname: str) -> str:
        """Canonical compact JSON text of the expanded schema (what gets registered)."""
        return json.dumps(self.expanded(fullname), separators=(",", ":"), sort_keys=False)

    def parsed(self, fullname: str) -> Any:
        """The fastavro-parsed expanded schema, cached."""
        if fullname not in self._parsed:
            try:
                self._parsed[fullname] = fastavro.parse_schema(self.expanded(fullname))
            except (SchemaParseException, UnknownType, ValueError, TypeError) as exc:
                path = self.file(fullname).path
                raise SchemaParseError(f"{path}: invalid Avro: {exc}") from exc
        return self._parsed[fullname]


def fingerprint(schema_text: str) -> str:
    """SHA-256 of the parsing canonical form, to identify one schema version."""
    canonical = fastavro.schema.to_parsing_canonical_form(json.loads(schema_text))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Expander:
    """Walks a schema, replacing the first reference to each named type by its body."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self._catalog = catalog
        self._defined: set[str] = set()

    def expand_named(self, fullname: str) -> JsonSchema:
        if fullname in self._defined:
            return fullname
        self._defined.add(fullname)
        definition = dict(self._catalog.file(fullname).definition)
        namespace = fullname.rsplit(".", 1)[0]
        definition["name"] = fullname.rsplit(".", 1)[1]
        definition["namespace"] = namespace
        if definition["type"] == "record":
            definition["fields"] = [
                {**f, "type": self.expand(f["type"], namespace)}
                for f in definition.get("fields", [])
            ]
        return definition

    def expand(self, node: JsonSchema, namespace: str) -> JsonSchema:
        if isinstance(node, list):
            return [self.expand(branch, namespace) for branch in node]
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "array":
                return {**node, "items": self.expand(node["items"], namespace)}
            if kind == "map":
                return {**node, "values": self.expand(node["values"], namespace)}
            if isinstance(kind, str) and kind not in PRIMITIVES and "logicalType" not in node:
                return self.expand(kind, namespace)
            return node
        if node in PRIMITIVES:
            return node
        fullname = node if "." in node else f"{namespace}.{node}"
        return self.expand_named(fullname)
