from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streams.activation.cli import main
from streams.activation.definitions import (
    DefinitionError,
    DefinitionSet,
    from_snapshot,
    load_definitions,
    snapshot,
)
from streams.errors import ActivationError
from tests.unit.activation.conftest import DEFINITIONS_DIR

AUDIENCE = """
condition:
  date: subscription.contract_end_date
  within_next: P30D
"""
JOURNEY = """
trigger: {audience: ending}
steps:
  - id: mail
    send: {channel: email, action_type: send_email, payload: {template_id: t}}
  - id: pause
    wait: {duration: P1D}
  - id: pick
    branch:
      cases: [{when: {trait: plan, op: eq, value: pro}, next: stop}]
      otherwise: stop
  - id: stop
    exit: {}
"""
Defs = Callable[[dict[str, str]], Path]


def test_repository_definitions_load(definitions: DefinitionSet) -> None:
    assert {"contract_ending", "trial_ending"} <= set(definitions.audiences)
    assert definitions.journeys["churn_prevention"].trigger.audience == "contract_ending"
    assert len(definitions.version) == 12


def test_version_is_content_hash(tmp_definitions: Defs) -> None:
    one = load_definitions(tmp_definitions({"audiences/ending.yaml": AUDIENCE,
                                            "journeys/j.yaml": JOURNEY}))
    comment_only = AUDIENCE + "\n# a comment changes nothing\n"
    two = load_definitions(tmp_definitions({"audiences/ending.yaml": comment_only,
                                            "journeys/j.yaml": JOURNEY}))
    assert two.version == one.version
    three = load_definitions(tmp_definitions({"audiences/ending.yaml":
                                              AUDIENCE.replace("P30D", "P31D"),
                                              "journeys/j.yaml": JOURNEY}))
    assert three.version != one.version


def test_snapshot_round_trip(definitions: DefinitionSet) -> None:
    again = from_snapshot(snapshot(definitions))
    assert again.version == definitions.version
    assert again == definitions


def test_tampered_snapshot_is_refused(definitions: DefinitionSet) -> None:
    raw = snapshot(definitions).replace(b'"P30D"', b'"P31D"', 1)
    with pytest.raises(DefinitionError, match="version"):
        from_snapshot(raw)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda j: j.replace("P1D", "P1X"), "journeys/j.yaml: steps[1].wait.duration: not an ISO"),
    (lambda j: j.replace("wait: {duration: P1D}", "wait: {}"),
     "journeys/j.yaml: steps[1].wait: give exactly one of duration, until"),
    (lambda j: j.replace("audience: ending", "audience: nope"),
     "journeys/j.yaml: trigger.audience: unknown audience 'nope'"),
    (lambda j: j.replace("otherwise: stop", "otherwise: nowhere"),
     "journeys/j.yaml: steps[2].branch.otherwise: unknown step id 'nowhere'"),
    (lambda j: j.replace("op: eq", "op: like"),
     "journeys/j.yaml: steps[2].branch.cases[0].when.op: Input should be"),
    (lambda j: j.replace("action_type: send_email", "action_type: audience_add"),
     "journeys/j.yaml: steps[0].send: action_type 'audience_add' is not one of"),
    (lambda j: j.replace("  - id: pause", "  - id: mail"),
     "journeys/j.yaml: steps: step id 'mail' is used twice"),
])
def test_errors_name_file_and_path(tmp_definitions: Defs, mutate: Callable[[str], str],
                                   expected: str) -> None:
    directory = tmp_definitions({"audiences/ending.yaml": AUDIENCE,
                                 "journeys/j.yaml": mutate(JOURNEY)})
    with pytest.raises(DefinitionError) as info:
        load_definitions(directory)
    assert expected in str(info.value)
    assert isinstance(info.value, ActivationError)


def test_condition_errors_hide_union_tags(tmp_definitions: Defs) -> None:
    bad = "condition:\n  all:\n    - {date: traits.x, within_next: P3D}\n    - {foo: 1}\n"
    with pytest.raises(DefinitionError, match=r"audiences/a.yaml: condition.all\[1\]: a "
                                              r"condition needs exactly one of the keys"):
        load_definitions(tmp_definitions({"audiences/a.yaml": bad}))


def test_quiet_hours_must_be_quoted(tmp_definitions: Defs) -> None:
    text = "quiet_hours: {start: 21:00, end: \"08:00\"}\n"
    with pytest.raises(DefinitionError, match=r"governance.yaml: quiet_hours.start: expected"):
        load_definitions(tmp_definitions({"governance.yaml": text}))


def test_bad_yaml_and_unknown_zone(tmp_definitions: Defs) -> None:
    with pytest.raises(DefinitionError, match="audiences/a.yaml: not valid YAML"):
        load_definitions(tmp_definitions({"audiences/a.yaml": "condition: [unclosed"}))
    with pytest.raises(DefinitionError, match="default_timezone: unknown IANA time zone"):
        load_definitions(tmp_definitions({"governance.yaml": "default_timezone: Mars/Base\n"}))


def test_cli_validate(tmp_definitions: Defs, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEFINITIONS_DIR)]) == 0
    assert "definitions version" in capsys.readouterr().out
    broken = tmp_definitions({"audiences/ending.yaml": AUDIENCE,
                              "journeys/j.yaml": JOURNEY.replace("P1D", "soon")})
    assert main(["validate", str(broken)]) == 1
    assert "journeys/j.yaml: steps[1].wait.duration" in capsys.readouterr().err
