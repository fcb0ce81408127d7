"""``definitions diff`` over real definition directories."""

from __future__ import annotations

import shutil
from pathlib import Path

from streams.activation.definitions import load_definitions
from streams.activation.diff import diff
from streams.settings import REPO_ROOT


def test_added_removed_and_changed_items_are_named(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "definitions", tmp_path / "d")
    before = load_definitions(tmp_path / "d")
    assert diff(before, before) == []
    (tmp_path / "d" / "audiences" / "lapsed_buyers.yaml").unlink()
    churn = tmp_path / "d" / "journeys" / "churn_prevention.yaml"
    churn.write_text(churn.read_text().replace("reentry: {after: P180D}",
                                               "reentry: {after: P90D}"))
    gov = tmp_path / "d" / "governance.yaml"
    gov.write_text(gov.read_text().replace("holdout_percent: 10", "holdout_percent: 5"))
    (tmp_path / "d" / "audiences" / "vip.yaml").write_text(
        "condition: {trait: aggregates.order_count, op: gte, value: 10}\n")
    lines = diff(before, load_definitions(tmp_path / "d"))
    assert lines[0].startswith(f"version {before.version} -> ")
    assert "- audiences/lapsed_buyers" in lines and "+ audiences/vip" in lines
    assert "~ journeys/churn_prevention" in lines and "~ governance" in lines
    assert any("P90D" in line and line.strip().startswith("+") for line in lines)
    assert any("P180D" in line and line.strip().startswith("-") for line in lines)
