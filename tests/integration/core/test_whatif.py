"""The what-if replay against the real ingestion topic: the same answer twice, the
draft's difference shown, nothing written to the action topics."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.activation.distribution import publish
from streams.follower import read_topic
from streams.serde import AvroSerde
from streams.settings import REPO_ROOT
from streams.topics import action_topic
from streams.whatif import Offsets, Span, read_events
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



def _two_partitions(core: CoreStack) -> dict[int, list[str]]:
    """Customers 0-9 on partition 0 (offsets 0-29), 10-19 on partition 1, 2 left empty;
    the event ids on each."""
    sent = events(20)
    produce(core.settings, core.ingest, encode_all(core.encode, sent[:30]), partition=0)
    produce(core.settings, core.ingest, encode_all(core.encode, sent[30:]), partition=1)
    return {0: [e.event_id for e in sent[:30]], 1: [e.event_id for e in sent[30:]]}


def test_offset_bounds_alone_or_with_time_bounds(core: CoreStack, serde: AvroSerde) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    on = _two_partitions(core)

    def ids(**span: Any) -> list[str]:
        return [e.event_id for e in read_events(core.settings, serde, Span(**span))]

    # One offset for every partition: [3, 6) on 0 then on 1 (produced later: the order is
    # timestamp, then partition), and nothing from the empty partition.
    assert ids(from_offsets=Offsets(every=3), to_offsets=Offsets(every=6)) == \
        on[0][3:6] + on[1][3:6]
    # A list chooses the partitions; without an end, up to the partition's end.
    assert ids(from_offsets=Offsets(listed={1: 27})) == on[1][27:]
    assert ids(from_offsets=Offsets(listed={0: 28, 1: 29}),
               to_offsets=Offsets(every=30)) == on[0][28:] + on[1][29:]
    # With time bounds too, every bound applies.
    later = datetime.now(UTC) + timedelta(hours=1)
    assert ids(start=later, from_offsets=Offsets(every=0)) == []
    assert ids(end=before, from_offsets=Offsets(every=0)) == []
    assert ids(start=before, end=later, from_offsets=Offsets(listed={0: 25})) == on[0][25:]
    with pytest.raises(ValueError, match="has no partition 5"):
        ids(from_offsets=Offsets(listed={5: 0}))


def test_whatif_cli_replays_an_offset_range(core: CoreStack, tmp_path: Path) -> None:
    publish(core.settings, REPO_ROOT / "definitions", "whatif-offsets")
    _two_partitions(core)
    shutil.copytree(REPO_ROOT / "definitions", tmp_path / "draft")
    (tmp_path / "draft" / "journeys" / "churn_prevention.yaml").unlink()
    env = {**os.environ, **settings_env(core.settings)}
    runs = [subprocess.run(
        [sys.executable, "-m", "streams.whatif", str(tmp_path / "draft"), *argv],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
        for argv in (["--from-offset", "0:0,1:0", "--to-offset", "0:15"],) * 2
        + (["--from-offset", "0:0,7:0"],)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert re.search(r"\b45 events replayed:", runs[0].stderr)  # 0-14 on 0, all 30 on 1
    assert runs[0].stdout == runs[1].stdout  # deterministic
    assert "the draft decides differently" in runs[0].stdout
    assert runs[2].returncode == 2
    assert f"whatif: {core.ingest} has no partition 7 (its partitions: 0, 1, 2)" in \
        runs[2].stderr
