"""The what-if replay against the real ingestion topic: the same answer twice, the
draft's difference shown, nothing written to the action topics."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.activation.distribution import publish
from streams.follower import read_topic
from streams.settings import REPO_ROOT
from streams.topics import action_topic
from tests.integration.core.conftest import CoreStack
from tests.integration.core.harness import encode_all, produce, settings_env
from tests.unit.test_whatif import events


def test_whatif_compares_a_draft_on_recorded_events(core: CoreStack, tmp_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    publish(core.settings, REPO_ROOT / "definitions", "whatif-test")
    produce(core.settings, core.ingest, encode_all(core.encode, events(30)))
    shutil.copytree(REPO_ROOT / "definitions", tmp_path / "draft")
    (tmp_path / "draft" / "journeys" / "churn_prevention.yaml").unlink()
    env = {**os.environ, **settings_env(core.settings)}
    runs = [subprocess.run(
        [sys.executable, "-m", "streams.whatif", str(tmp_path / "draft"),
         "--from", start.isoformat()], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=180, check=False) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout  # deterministic
    assert "90 events replayed" in runs[0].stderr
    assert "the draft decides differently" in runs[0].stdout
    assert "churn_prevention / email / sent" in runs[0].stdout
    for channel in ("email", "paid_media"):  # nothing reached an action topic
        assert read_topic(core.settings, core.settings.topic(action_topic(channel))) == []
