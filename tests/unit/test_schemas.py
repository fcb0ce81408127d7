"""Every .avsc parses, follows the house rules, and composes into registrable schemas."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest

from streams.errors import SchemaParseError
from streams.schemas import SchemaCatalog, read_schema_file
from streams.settings import REPO_ROOT

SCHEMA_FILES = sorted((REPO_ROOT / "avro_schemas").rglob("*.avsc"))


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load(REPO_ROOT / "avro_schemas")


def test_there_are_schema_files() -> None:
    assert len(SCHEMA_FILES) >= 10


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_each_file_is_one_namespaced_type_named_like_the_file(
    path: Path, catalog: SchemaCatalog
) -> None:
    schema_file = read_schema_file(path)
    assert schema_file.fullname.startswith("io.activation.")
    assert schema_file.fullname.rsplit(".", 1)[1] == path.stem
    fastavro.parse_schema(catalog.expanded(schema_file.fullname))  # fully resolvable


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_every_field_is_documented(path: Path) -> None:
    definition = json.loads(path.read_text())
    assert definition.get("doc"), f"{path.name}: the type needs a doc"
    for field in definition.get("fields", []):
        assert field.get("doc"), f"{path.name}: field {field['name']} needs a doc"


def test_optional_fields_default_to_null(catalog: SchemaCatalog) -> None:
    for name in catalog.names:
        for field in catalog.file(name).definition.get("fields", []):
            if isinstance(field["type"], list) and field["type"][0] == "null":
                assert field.get("default", "missing") is None, f"{name}.{field['name']}"


def test_expansion_defines_each_named_type_once(catalog: SchemaCatalog) -> None:
    text = catalog.schema_str("io.activation.actions.ActionCommand")
    assert text.count('"name":"CustomerIdentifiers"') == 1


def test_unknown_reference_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "A.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "A",
                "namespace": "x",
                "doc": "d",
                "fields": [{"name": "b", "type": "x.Missing", "doc": "d"}],
            }
        )
    )
    with pytest.raises(SchemaParseError, match="x.Missing"):
        SchemaCatalog.load(tmp_path).expanded("x.A")


def test_a_file_without_namespace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "A.avsc").write_text('{"type": "record", "name": "A", "fields": []}')
    with pytest.raises(SchemaParseError, match="namespace"):
        SchemaCatalog.load(tmp_path)
