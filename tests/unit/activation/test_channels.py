"""Channels as configuration (streams/activation/channels.py): declared in definitions,
validated against every send, cap and route, governed with their own caps and quiet
hours, declared as topics and schema subjects without a code change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from streams.activation.actions import plan_action
from streams.activation.ask import BadQuestion, Question
from streams.activation.channels import BUILTIN_CHANNELS, channel_topics
from streams.activation.definitions import (
    DefinitionError,
    DefinitionSet,
    SendSpec,
    from_snapshot,
    load_definitions,
    snapshot,
)
from streams.activation.engine import ActivationState, govern
from streams.activation.facts import Facts
from streams.activation.governance import decide, is_removal, record_send
from streams.activation.held import release_due
from streams.activation.model import PlannedAction
from streams.schema_workflow import plans
from streams.schemas import SchemaCatalog
from streams.settings import REPO_ROOT, Settings
from streams.topics import declared_topics
from tests.unit.activation.conftest import DEFINITIONS_DIR, T0

Defs = Callable[[dict[str, str]], Path]
VOICE = """
description: Phone calls placed by the call centre's dialer.
purpose: service
action_types:
  place_call: {requires: [script_id]}
frequency_caps:
  - {max_sends: 1, per: P7D}
quiet_hours: {start: "18:00", end: "10:00"}
"""
AUDIENCE = "condition: {trait: plan, op: eq, value: pro}\n"
CALLS = """
trigger: {audience: pros}
steps:
  - id: ring
    send: {channel: voice, action_type: place_call, payload: {script_id: welcome}}
"""
EMAIL = "action_types: {send_email: {}}\n"


def voice_set(tmp_definitions: Defs, **extra: str) -> Path:
    return tmp_definitions({"channels/voice.yaml": VOICE, "channels/email.yaml": EMAIL,
                            "audiences/pros.yaml": AUDIENCE, "journeys/calls.yaml": CALLS,
                            **extra})


def customer(facts: Callable[..., Facts], **consent: str) -> Facts:
    return facts(traits={"plan": "pro", "timezone": "Europe/Berlin"}, consent=consent)


def test_the_repository_declares_six_channels_sms_and_push_among_them(
        definitions: DefinitionSet) -> None:
    channels = definitions.all_channels
    assert sorted(channels) == ["crm", "email", "paid_media", "push", "sms", "webhook"]
    assert channels["sms"].topic_name == "actions.sms" and channels["sms"].purpose == "service"
    assert channels["push"].quiet_hours is True
    for name, builtin in BUILTIN_CHANNELS.items():  # the same actions as before
        assert sorted(channels[name].action_types) == sorted(builtin.action_types)


def test_a_set_without_channel_files_has_the_builtin_four(tmp_definitions: Defs) -> None:
    defs = load_definitions(tmp_definitions({"audiences/pros.yaml": AUDIENCE}))
    assert defs.channels == {} and dict(defs.all_channels) == BUILTIN_CHANNELS
    assert "channels" not in snapshot(defs).decode()  # the hash of older sets is kept
    assert from_snapshot(snapshot(defs)).version == defs.version


def test_a_channel_added_by_definitions_alone(tmp_definitions: Defs,
                                              facts: Callable[..., Facts]) -> None:
    """A new file is all it takes: validated, decided on, and its command planned."""
    defs = load_definitions(voice_set(tmp_definitions))
    again = from_snapshot(snapshot(defs))
    assert again == defs and again.all_channels["voice"].topic_name == "actions.voice"
    send = defs.journeys["calls"].steps[0].send
    assert send is not None
    action = plan_action("p1", send, purpose=defs.purpose_of(send))
    assert (action.channel, action.purpose) == ("voice", "service")  # the channel's
    granted = customer(facts, **{"service:voice": "GRANTED"})
    state = ActivationState.new("p1")
    _, decisions, commands = govern(state, [action], granted, T0, defs)  # 11:00 Berlin
    assert [d.outcome for d in decisions] == ["sent"]
    assert commands[0]["channel"] == "voice" and commands[0]["variants"] == {}
    denied = customer(facts)
    assert decide(action, denied, [], defs.governance, T0, defs.version).rule == "consent"


def test_a_channel_s_own_caps_and_quiet_hours_govern_it(tmp_definitions: Defs,
                                                        facts: Callable[..., Facts]) -> None:
    defs = load_definitions(voice_set(tmp_definitions))
    rules, granted = defs.governance, customer(facts, **{"service:voice": "GRANTED"})
    call = PlannedAction(action_id="a1", profile_id="p1", channel="voice",
                         action_type="place_call", purpose="service",
                         payload={"script_id": "s"})
    first = decide(call, granted, [], rules, T0, "v")
    history = record_send([], first, rules, T0)
    again = decide(call.model_copy(update={"action_id": "a2"}), granted, history, rules,
                   T0 + timedelta(days=3), "v")
    assert (first.outcome, again.rule) == ("sent", "frequency_cap")
    evening = T0 + timedelta(hours=8)  # 19:00 in Berlin: the channel's own quiet hours
    late = decide(call, granted, [], rules, evening, "v")
    assert (late.outcome, late.rule) == ("delayed", "quiet_hours")
    assert late.not_before == T0 + timedelta(hours=23)  # 10:00 Berlin, 09:00 UTC, next day


def test_removal_action_types_are_never_blocked(definitions: DefinitionSet,
                                                facts: Callable[..., Facts]) -> None:
    rules = definitions.governance
    remove = PlannedAction(action_id="r", profile_id="p1", channel="paid_media",
                           action_type="audience_remove", purpose="marketing",
                           payload={"audience_id": "a"})
    delete = remove.model_copy(update={"channel": "crm", "action_type": "update_crm",
                                       "payload": {"operation": "delete"}})
    assert is_removal(remove, rules) and is_removal(delete, rules)
    for action in (remove, delete):
        assert decide(action, facts(), [], rules, T0, "v").rule == "removal"  # no consent


@pytest.mark.parametrize(("change", "expected"), [
    ({"channels/voice.yaml": None},
     "journeys/calls.yaml: steps[0].send.channel: unknown channel 'voice': declare it in "
     "channels/ (declared: email); a channel that journeys or schedules still send on "
     "cannot be removed"),
    ({"journeys/calls.yaml": CALLS.replace("place_call", "send_sms")},
     "journeys/calls.yaml: steps[0].send: action_type 'send_sms' is not one of "
     "['place_call'] for channel voice"),
    ({"journeys/calls.yaml": CALLS.replace("script_id: welcome", "other: x")},
     "journeys/calls.yaml: steps[0].send: voice place_call actions need payload.script_id"),
    ({"governance.yaml": "frequency_caps: [{channel: fax, max_sends: 1, per: P1D}]\n"},
     "governance.yaml: frequency_caps[0].channel: unknown channel 'fax'"),
    ({"channels/voice.yaml": VOICE + "topic: events.ingest\n"},
     "channels/voice.yaml: topic: Value error, a channel's topic is actions.<name>"),
    ({"channels/email.yaml": EMAIL + "topic: actions.voice\n"},
     "channels/voice.yaml: topic: actions.voice is channel email's topic already"),
])
def test_channel_errors_name_file_and_path(tmp_definitions: Defs,
                                           change: dict[str, str | None],
                                           expected: str) -> None:
    files = {"channels/voice.yaml": VOICE, "channels/email.yaml": EMAIL,
             "audiences/pros.yaml": AUDIENCE, "journeys/calls.yaml": CALLS}
    files = {k: v for k, v in {**files, **change}.items() if v is not None}
    with pytest.raises(DefinitionError) as info:
        load_definitions(tmp_definitions(files))  # type: ignore[arg-type]
    assert expected.replace("Value error, ", "") in str(info.value)


def test_bootstrap_and_the_schema_workflow_declare_a_new_channel_s_topic(
        tmp_definitions: Defs, settings_factory: Callable[..., Settings]) -> None:
    directory = voice_set(tmp_definitions)
    assert channel_topics(directory) == ["actions.email", "actions.voice"]
    assert channel_topics(REPO_ROOT / "nowhere") == sorted(
        f"actions.{c}" for c in BUILTIN_CHANNELS)
    settings = settings_factory(definitions_dir=directory, topic_prefix="t.")
    names = {s.name for s in declared_topics(settings, channel_topics(directory))}
    assert {"t.actions.voice", "t.actions.email"} <= names and "t.actions.crm" not in names
    subjects = {p.subject: p for p in plans(settings, SchemaCatalog.load(settings.schemas_dir))}
    voice = subjects["t.actions.voice-value"]
    assert (voice.type_name, voice.compatibility) == ("io.activation.actions.ActionCommand",
                                                      "FULL_TRANSITIVE")


def test_a_held_action_of_a_removed_channel_is_cancelled_when_due(
        tmp_definitions: Defs, facts: Callable[..., Facts]) -> None:
    with_voice = load_definitions(voice_set(tmp_definitions))
    without = load_definitions(tmp_definitions({"channels/email.yaml": EMAIL,
                                                "audiences/pros.yaml": AUDIENCE}))
    granted = customer(facts, **{"service:voice": "GRANTED"})
    call = PlannedAction(action_id="a1", profile_id="p1", channel="voice",
                         action_type="place_call", purpose="service",
                         payload={"script_id": "s"})
    state, decisions, _ = govern(ActivationState.new("p1"), [call], granted,
                                 T0 + timedelta(hours=8), with_voice)
    assert decisions[0].outcome == "delayed" and len(state.held) == 1
    kept, _, settled, commands = release_due(state.held, state.sends, granted,
                                             T0 + timedelta(days=1), without, lambda a: None)
    assert kept == [] and commands == []
    assert [(d.outcome, d.rule) for d in settled] == [("cancelled", "channel_removed")]


def test_the_decision_api_asks_about_the_channels_it_is_given(
        definitions: DefinitionSet) -> None:
    body = {"channel": "sms", "action_type": "send_sms", "purpose": "service"}
    with pytest.raises(BadQuestion, match="unknown channel 'sms'"):
        Question.parse(body)  # the built-in four by default
    assert Question.parse(body, definitions.all_channels).channel == "sms"


def test_a_send_spec_takes_any_channel_name_the_set_declares() -> None:
    spec = SendSpec(channel="whatsapp", action_type="send_message")
    assert spec.purpose is None  # the channel's, once planned
    with pytest.raises(ValueError, match="channel"):
        SendSpec(channel="Not A Name", action_type="x")


def test_repository_definitions_dir_is_the_default(definitions: DefinitionSet) -> None:
    assert load_definitions(DEFINITIONS_DIR).version == definitions.version
