"""What-if replay over the real stages (streams/whatif.py): deterministic, and it shows
what a draft changes."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from streams.activation.definitions import load_definitions
from streams.core.pipeline import StageConfig
from streams.records import Envelope, Identifiers
from streams.settings import REPO_ROOT
from streams.whatif import replay, report

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # afternoon in Berlin: no quiet hours
CFG = StageConfig(timedelta(days=7), timedelta(seconds=5), 50)


def events(n: int) -> list[Envelope]:
    out = []
    for i in range(n):
        ids = Identifiers(customer_id=f"c{i}")
        for k, (name, payload) in enumerate([
            ("consent_updated", {"consent_type": "marketing:email", "status": "GRANTED"}),
            ("consent_updated", {"consent_type": "marketing:paid_media", "status": "GRANTED"}),
            ("subscription_started", {"plan": "pro", "start_date": date(2026, 1, 1),
                                      "subscription_id": f"s{i}",
                                      "contract_end_date": date(2026, 6, 20)})]):
            at = T0 + timedelta(seconds=10 * i + k)
            out.append(Envelope(event_id=f"e{i}-{k}", event_name=name, event_time=at,
                                received_time=at, source="billing", identifiers=ids,
                                payload=payload))
    return out


def test_a_draft_without_the_churn_journey_decides_nothing_for_it(tmp_path: Path) -> None:
    in_force = load_definitions(REPO_ROOT / "definitions")
    shutil.copytree(REPO_ROOT / "definitions", tmp_path / "d")
    (tmp_path / "d" / "journeys" / "churn_prevention.yaml").unlink()
    draft = load_definitions(tmp_path / "d")
    first = replay(events(20), in_force, CFG)
    assert replay(events(20), in_force, CFG) == first  # the same input, the same answer
    after = replay(events(20), draft, CFG)
    assert first.enrollments["churn_prevention"] > 0
    assert after.enrollments["churn_prevention"] == 0
    assert first.entries == after.entries  # audiences are unchanged
    lines = report(first, after)
    churn = [line for line in lines if line.startswith("churn_prevention / email / sent")]
    assert churn and churn[0].split()[-1].startswith("-")
    assert lines[-1] == "the draft decides differently (see change)"
    assert report(first, first)[-1] == "no difference"
