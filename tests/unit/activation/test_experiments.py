"""Experiments (split steps, streams/activation/steps.py): a deterministic, salted share
of profiles down each variant, the same in every process, recorded on the enrollment, on
the timeline, in the commands and in the audience changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from streams.activation.definitions import DefinitionError, load_definitions
from streams.activation.governance import in_holdout
from streams.activation.steps import SplitSpec, pick_variant
from streams.core.identity import new_profile_id
from streams.records import Envelope
from streams.settings import REPO_ROOT
from tests.unit.activation.conftest import Clock
from tests.unit.activation.test_runtime import Stage

Defs = Callable[[dict[str, str]], Path]
ABC = SplitSpec.model_validate({"salt": "s1", "variants": [
    {"name": "a", "weight": 50, "next": "x"}, {"name": "b", "weight": 30, "next": "y"},
    {"name": "c", "weight": 20, "next": "z"}]})
PROFILES = [f"p-{n}" for n in range(10_000)]
TRY = """
trigger: {audience: pros}
reentry: after_exit
holdout_percent: 0
exit_when: {events: [bought]}
steps:
  - id: subject_test
    split:
      variants:
        - {name: plain, weight: 1, next: plain}
        - {name: emoji, weight: 1, next: emoji}
  - id: plain
    send: {channel: email, action_type: send_email, payload: {template_id: plain}}
    next: later
  - id: emoji
    send: {channel: email, action_type: send_email, payload: {template_id: emoji}}
  - id: later
    wait: {duration: P2D}
  - id: nudge
    send: {channel: paid_media, action_type: audience_add, payload: {audience_id: try}}
  - id: hold
    wait: {duration: P30D}
"""
PROS = "condition: {trait: plan, op: eq, value: pro}\n"


def test_proportions_over_10000_profiles_follow_the_weights() -> None:
    counts = Counter(pick_variant(ABC, "j", "split", pid).name for pid in PROFILES)
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(counts[name] / len(PROFILES) - share) < 0.02  # 4+ standard deviations


def test_assignments_are_the_same_in_a_fresh_process() -> None:
    """What a restarted worker computes: another interpreter, another hash seed."""
    here = {pid: pick_variant(ABC, "j", "split", pid).name for pid in PROFILES[:500]}
    code = ("import json,sys\nfrom streams.activation.steps import SplitSpec, pick_variant\n"
            "spec = SplitSpec.model_validate_json(sys.argv[1])\n"
            "print(json.dumps({p: pick_variant(spec, 'j', 'split', p).name "
            "for p in json.loads(sys.argv[2])}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, ABC.model_dump_json(),
                          json.dumps(PROFILES[:500])], cwd=REPO_ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == here


def test_the_salt_reshuffles_and_the_holdout_is_independent() -> None:
    resalted = ABC.model_copy(update={"salt": "s2"})
    moved = sum(pick_variant(ABC, "j", "split", p).name
                != pick_variant(resalted, "j", "split", p).name for p in PROFILES)
    assert moved > 4_000  # a new experiment, not the old one again
    held = [p for p in PROFILES if in_holdout(p, "j", 10, "2026")]
    share = Counter(pick_variant(ABC, "j", "split", p).name for p in held)
    assert abs(share["a"] / len(held) - 0.5) < 0.06  # the control group is not skewed


def pro_customer(stage: Stage, envelope: Callable[..., Envelope], cust: str) -> str:
    at = stage.clock.now
    for consent in ("marketing:email", "marketing:paid_media"):
        stage.event(envelope(f"{cust}-{consent}", "consent_updated", at, cust,
                             {"consent_type": consent, "status": "GRANTED"}))
    stage.event(envelope(f"{cust}-pro", "identify", at, cust, plan="pro"))
    return new_profile_id(f"cid:{cust}")


def test_the_variant_is_on_the_timeline_in_commands_and_in_audience_changes(
        tmp_definitions: Defs, clock: Clock, envelope: Callable[..., Envelope]) -> None:
    stage = Stage(load_definitions(tmp_definitions({"audiences/pros.yaml": PROS,
                                                    "journeys/try.yaml": TRY})), clock)
    pid = pro_customer(stage, envelope, "c1")
    [assignment] = [a for e in stage.sent for a in e.assignments]
    variant = assignment["variant"]
    expected = {"try/subject_test": variant}
    [email] = [c for e in stage.sent for c in e.commands]
    assert email["payload"]["template_id"] == variant and email["variants"] == expected
    note = next(e for e in stage.stages.timeline(pid) if e["kind"] == "experiment")
    assert note["event_name"] == "experiment.assigned"
    assert note["detail"]["variant"] == variant and note["detail"]["step_id"] == "subject_test"
    decision = next(e for e in stage.stages.timeline(pid) if e["kind"] == "decision")
    assert decision["detail"]["variants"] == expected
    clock.advance(timedelta(days=2))
    [later] = [c for e in stage.tick() for c in e.commands]  # a step later, the same
    assert later["action_type"] == "audience_add" and later["variants"] == expected
    stage.sent.clear()
    stage.event(envelope("c1-basic", "identify", clock.now, "c1", plan="basic"))
    [exited] = [c for e in stage.sent for c in e.changes]  # the outcome, per variant
    assert exited["change"] == "exited" and exited["variants"] == expected


def test_reentry_gets_the_same_variant_and_the_split_is_counted_per_variant(
        tmp_definitions: Defs, clock: Clock, envelope: Callable[..., Envelope]) -> None:
    stage = Stage(load_definitions(tmp_definitions({"audiences/pros.yaml": PROS,
                                                    "journeys/try.yaml": TRY})), clock)
    for n in range(40):
        pro_customer(stage, envelope, f"c{n}")
    first = {a["profile_id"]: a["variant"] for e in stage.sent for a in e.assignments}
    assert set(first.values()) == {"plain", "emoji"}
    stage.sent.clear()
    clock.advance(timedelta(days=1))
    stage.event(envelope("c0-bought", "bought", clock.now, "c0"))  # exit, then re-enter
    stage.event(envelope("c0-again", "identify", clock.now, "c0", plan="basic"))
    stage.event(envelope("c0-back", "identify", clock.now, "c0", plan="pro"))
    [again] = [a for e in stage.sent for a in e.assignments]
    assert again["enrollment_id"] == "try#2" and again["variant"] == first[again["profile_id"]]


@pytest.mark.parametrize(("split", "message"), [
    ("variants: [{name: a, weight: 1, next: plain}]", "at least 2 items"),
    ("variants: [{name: a, weight: 1, next: plain}, {name: a, weight: 1, next: emoji}]",
     "variant names must be unique"),
    ("variants: [{name: a, weight: 0, next: plain}, {name: b, weight: 1, next: emoji}]",
     "greater than 0"),
    ("variants: [{name: A B, weight: 1, next: plain}, {name: b, weight: 1, next: emoji}]",
     "should match pattern"),
    ("variants: [{name: a, weight: 1, next: nowhere}, {name: b, weight: 1, next: emoji}]",
     "journeys/try.yaml: steps[0].split.variants[0].next: unknown step id 'nowhere'"),
])
def test_splits_are_validated_with_file_and_path(tmp_definitions: Defs, split: str,
                                                 message: str) -> None:
    journey = TRY.replace("""    split:
      variants:
        - {name: plain, weight: 1, next: plain}
        - {name: emoji, weight: 1, next: emoji}""", f"    split: {{{split}}}")
    with pytest.raises(DefinitionError, match="journeys/try.yaml") as info:
        load_definitions(tmp_definitions({"audiences/pros.yaml": PROS,
                                          "journeys/try.yaml": journey}))
    assert message in str(info.value)
