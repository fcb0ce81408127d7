"""The stored activation state: pydantic's JSON, byte for byte, and a decode cache that
never answers for other bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from streams.activation import codec
from streams.activation.engine import ActivationState
from streams.activation.held import HeldAction
from streams.activation.journeys import Enrollment, JourneyState
from streams.activation.model import PlannedAction, SendRecord
from streams.activation.runtime import STATE, load_state, save_state
from streams.core.sandbox import DictStore

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def busy_state(profile_id: str = "p1") -> ActivationState:
    action = PlannedAction(action_id="a1", profile_id=profile_id, channel="email",
                           action_type="send_email", purpose="marketing",
                           payload={"template_id": "t", "amount": 12.5, "n": 3, "ok": True,
                                    "none": None, "big": 1e16},
                           journey_id="j", journey_version=2, step_id="s",
                           enrollment_id="j#1", caused_by="ev1", variants={"j/split": "b"})
    enrollment = Enrollment(journey_id="j", journey_version=2, enrollment_id="j#1",
                            trigger="ev1", entered_at=T0, step_id="wait",
                            wake_at=T0 + timedelta(days=3), waiting_for="purchase",
                            added_audiences={"ads": "s2"}, variants={"split": "b"})
    journeys = JourneyState(profile_id=profile_id, active={"j": enrollment},
                            enrollments={"j": 1, "k": 2}, last_exit={"k": T0},
                            completed=["k#1", "k#2"])
    return ActivationState(
        profile_id=profile_id, memberships=["a", "b"], journeys=journeys,
        sends=[SendRecord(action_id="a0", channel="email", at=T0.replace(microsecond=0))],
        audience_wakes={"a": T0, "b": T0.astimezone(timezone(timedelta(hours=2)))},
        evaluated_version="v1", notes_written=7,
        held=[HeldAction(action=action, decision_id="d1", not_before=T0)])


def test_the_encoding_is_pydantics_json() -> None:
    for state in (ActivationState.new("p0"), busy_state()):
        assert codec.encode(state, 42) == b"42 " + state.model_dump_json().encode()


def test_a_state_reads_back_from_either_stored_form() -> None:
    state, store = busy_state(), DictStore()
    save_state(store, state, 17)
    codec._DECODED.clear()  # read as a restarted worker would
    assert load_state(store, "p1") == (state, 17)
    legacy = json.dumps({"state": state.model_dump_json(), "last_offset": 9}).encode()
    store[STATE + b"p1"] = legacy  # written before the position led the value
    assert load_state(store, "p1") == (state, 9)


def test_the_cache_answers_only_for_the_same_bytes() -> None:
    store = DictStore()
    save_state(store, busy_state(), 1)
    other = busy_state().model_copy(update={"notes_written": 99})
    store[STATE + b"p1"] = b"2 " + other.model_dump_json().encode()  # another writer
    assert load_state(store, "p1") == (other, 2)
    assert load_state(DictStore(), "p1") == (ActivationState.new("p1"), -1)
