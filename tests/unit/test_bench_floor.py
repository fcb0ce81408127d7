"""bench-floor's in-process part: the libraries' calls and activation's counts over the
workload, with the engine left as it was found."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest

from bench.activation_defs import recent, write_definitions
from bench.floor import library_floors, report
from streams.activation import audiences, engine
from streams.schemas import SchemaCatalog
from streams.settings import load_settings
from streams.topics import ENVELOPE
from tests.integration.core.workload import workload


def test_library_floors_measure_the_workload_and_restore_the_engine(tmp_path: Path) -> None:
    settings = load_settings()
    events = recent(workload(300, 30), 300, datetime.now(UTC))
    definitions = write_definitions(tmp_path / "defs")
    schema = SchemaCatalog.load(settings.schemas_dir).parsed(ENVELOPE)
    raws = []
    for e in events:
        buf = io.BytesIO(b"\x00\x00\x00\x00\x01")  # the registry's frame, skipped
        buf.seek(5)
        fastavro.schemaless_writer(buf, schema, e.to_avro())
        raws.append(buf.getvalue())
    figures = library_floors(settings, events, raws, definitions)
    assert engine.audience_step is audiences.audience_step
    assert figures["avro_decode"] > 0 and figures["profile_json"] > 0
    assert figures["changes"] > 0 and figures["audiences"] > 0
    assert figures["profile_bytes"] > 100


def test_the_report_derives_the_best_case(capsys: pytest.CaptureFixture[str]) -> None:
    figures = {"faust": 300.0, "hop": 5.0, "produce": 2.0, "avro_decode": 10.0,
               "profile_json": 10.0, "profile_bytes": 2000.0, "change_encode": 8.0,
               "changes": 1.5, "decisions": 0.8, "commands": 0.5, "audiences": 30.0}
    report(figures, 120.0)
    out = capsys.readouterr().out
    assert "33.0 CPU-us/event = 9.09x" in out  # 3 * 5 - 2 (screening keeps no state) + 20
    assert "50.0 CPU-us/event = +152% of the core's best case, +42%" in out  # 30 + 2 * 10
