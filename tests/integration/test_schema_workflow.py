"""The schema workflow against the real registry: compatible changes pass, breaks are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.errors import IncompatibleSchemaError
from streams.schema_workflow import SchemaWorkflow
from streams.settings import REPO_ROOT, Settings
from tests.support.stack import StackHandle

ENVELOPE_FILE = Path("events") / "EventEnvelope.avsc"


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    """A private copy of avro_schemas/ that a test may edit."""
    target = tmp_path / "avro_schemas"
    shutil.copytree(REPO_ROOT / "avro_schemas", target)
    return target


def edit_envelope(schemas_dir: Path, field: dict[str, Any]) -> None:
    path = schemas_dir / ENVELOPE_FILE
    definition = json.loads(path.read_text())
    definition["fields"].append(field)
    path.write_text(json.dumps(definition, indent=2))


@pytest.fixture
def workflow_for(stack_settings: Callable[..., Settings]) -> Callable[[Path], SchemaWorkflow]:
    def make(schemas_dir: Path) -> SchemaWorkflow:
        return SchemaWorkflow(
            stack_settings(
                schemas_dir=schemas_dir, breaking_changes_file=schemas_dir / "breaking-changes.json"
            )
        )

    return make


def ingest_plan(flow: SchemaWorkflow) -> Any:
    return next(p for p in flow.plans() if p.subject.endswith("events.ingest-value"))


NO_DEFAULT = {"name": "tenant", "type": "string", "doc": "No default."}


@pytest.fixture
def broken_flow(
    schemas_copy: Path, workflow_for: Callable[[Path], SchemaWorkflow]
) -> SchemaWorkflow:
    """v1 registered, then a field without a default added to the local envelope."""
    flow = workflow_for(schemas_copy)
    flow.register(ingest_plan(flow))
    edit_envelope(schemas_copy, NO_DEFAULT)
    return workflow_for(schemas_copy)


def test_compatible_change_is_accepted_and_registered(
    schemas_copy: Path, workflow_for: Callable[[Path], SchemaWorkflow]
) -> None:
    flow = workflow_for(schemas_copy)
    for plan in flow.plans():
        assert flow.register(plan)[0].status == "new"
    edit_envelope(
        schemas_copy,
        {
            "name": "tenant",
            "type": ["null", "string"],
            "default": None,
            "doc": "Tenant of a multi-brand sender.",
        },
    )
    flow = workflow_for(schemas_copy)
    result = flow.check(ingest_plan(flow))
    assert result.status == "compatible", result.reasons
    result, schema_id = flow.register(ingest_plan(flow))
    assert schema_id is not None
    assert flow.versions(ingest_plan(flow).subject) == [1, 2]
    level = flow.registry.raw.get_compatibility(ingest_plan(flow).subject)
    assert level == "BACKWARD"


def test_incompatible_change_is_refused_with_the_field_and_rule(
    broken_flow: SchemaWorkflow,
) -> None:
    flow = broken_flow
    result = flow.check(ingest_plan(flow))
    assert result.status == "incompatible"
    assert any(
        "$.tenant" in r and "WITHOUT a default" in r and "BACKWARD" in r for r in result.reasons
    ), result.reasons
    with pytest.raises(IncompatibleSchemaError, match="tenant"):
        flow.register(ingest_plan(flow))
    assert flow.versions(ingest_plan(flow).subject) == [1]


def test_registry_itself_refuses_what_the_cli_refuses(broken_flow: SchemaWorkflow) -> None:
    """Our explanation agrees with the registry's own verdict."""
    broken_flow.set_level(ingest_plan(broken_flow))
    assert broken_flow._registry_says_compatible(ingest_plan(broken_flow), 1) is False


def test_recorded_break_is_registered_and_the_level_restored(
    schemas_copy: Path, workflow_for: Callable[[Path], SchemaWorkflow], broken_flow: SchemaWorkflow
) -> None:
    plan = ingest_plan(broken_flow)
    (schemas_copy / "breaking-changes.json").write_text(
        json.dumps(
            {
                "changes": [
                    {
                        "subject": plan.subject,
                        "fingerprint": plan.fingerprint,
                        "reason": "all producers migrated; old data replayed via a mapper",
                    }
                ]
            }
        )
    )
    flow = workflow_for(schemas_copy)
    result, schema_id = flow.register(ingest_plan(flow))
    assert result.status == "approved-break" and schema_id is not None
    assert flow.registry.raw.get_compatibility(plan.subject) == "BACKWARD"


def test_cli_check_exits_non_zero_and_explains(
    schemas_copy: Path, broken_flow: SchemaWorkflow, stack: StackHandle, uid: str
) -> None:
    env = {
        "ACTIVATION_SCHEMA_REGISTRY_URL": stack.registry_url,
        "ACTIVATION_TOPIC_PREFIX": f"t{uid}.",
        "ACTIVATION_SCHEMAS_DIR": str(schemas_copy),
        "ACTIVATION_BREAKING_CHANGES_FILE": str(schemas_copy / "breaking-changes.json"),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "streams.schema_cli", "check"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "incompatible" in proc.stdout
    assert "$.tenant: field added WITHOUT a default" in proc.stdout
