from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from streams.activation.actions import (
    ACTION_COMMAND,
    ActionCommandError,
    action_id_for,
    plan_action,
    to_command,
)
from streams.activation.definitions import SendSpec
from streams.activation.facts import Facts
from streams.activation.governance import decide
from streams.activation.governance_rules import GovernanceRules
from streams.schemas import SchemaCatalog
from streams.settings import REPO_ROOT
from tests.unit.activation.conftest import T0

GRANTED = {"marketing:email": "GRANTED", "marketing:paid_media": "GRANTED"}


@pytest.fixture(scope="module")
def schema() -> Any:
    return SchemaCatalog.load(REPO_ROOT / "avro_schemas").parsed(ACTION_COMMAND)


def roundtrip(schema: Any, record: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    result = fastavro.schemaless_reader(buffer, schema)
    assert isinstance(result, dict)
    return result


def test_action_id_is_deterministic_per_cause() -> None:
    base = ("p1", "churn", "churn#1", "reminder", "evt-1", "send_email")
    assert action_id_for(*base) == action_id_for(*base)
    assert len({action_id_for(*base),
                action_id_for("p2", *base[1:]),
                action_id_for(*base[:2], "churn#2", *base[3:]),
                action_id_for(*base[:3], "other", *base[4:]),
                action_id_for(*base[:4], "evt-2", base[5]),
                action_id_for(*base[:5], "audience_remove")}) == 6
    # fields cannot bleed into each other
    assert action_id_for("a", "bc", None, None, None, "x") != action_id_for(
        "ab", "c", None, None, None, "x")


def test_command_encodes_with_the_avro_schema(schema: Any) -> None:
    send = SendSpec(channel="email", action_type="send_email",
                    payload={"template_id": "t1", "priority": 2, "score": 0.5, "vip": True,
                             "note": None})
    action = plan_action("p1", send, journey_id="churn", journey_version=3,
                         enrollment_id="churn#1", step_id="mail", trigger="evt-1")
    facts = Facts(profile_id="p1", consent=GRANTED,
                  identifiers={"customer_id": ["c1"], "email_sha256": ["bb", "aa"]})
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    rules = GovernanceRules(quiet_hours={"start": "21:00", "end": "08:00"})  # type: ignore[arg-type]
    decision = decide(action, facts, [], rules, night, "v1")
    assert decision.outcome == "delayed"
    command = to_command(action, decision, facts.identifiers)
    back = roundtrip(schema, command)
    assert back["action_id"] == action.action_id
    assert back["identifiers"] == {"customer_id": "c1", "email_sha256": "aa",
                                   "phone_sha256": None, "anonymous_id": None}
    assert back["payload"] == {"template_id": "t1", "priority": 2, "score": 0.5, "vip": True,
                               "note": None}
    assert back["journey_version"] == 3
    assert back["decision_id"] == decision.decision_id
    assert back["caused_by_event_id"] == "evt-1"
    assert back["created_at"] == night
    assert back["not_before"] == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


def test_command_without_journey_encodes(schema: Any) -> None:
    send = SendSpec(channel="paid_media", action_type="audience_remove",
                    payload={"audience_id": "a1"})
    action = plan_action("p1", send)
    decision = decide(action, Facts(profile_id="p1"), [], GovernanceRules(), T0, "v1")
    back = roundtrip(schema, to_command(action, decision, {"anonymous_id": ["x"]}))
    assert back["journey_id"] is None and back["not_before"] is None


def test_withheld_decision_gives_no_command() -> None:
    action = plan_action("p1", SendSpec(channel="email", action_type="send_email"))
    decision = decide(action, Facts(profile_id="p1"), [], GovernanceRules(),
                      T0 + timedelta(hours=1), "v1")
    assert decision.outcome == "withheld"
    with pytest.raises(ActionCommandError):
        to_command(action, decision, {})
