"""What-if replay over the real stages (streams/whatif.py): deterministic, and it shows
what a draft changes."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.activation.definitions import load_definitions
from streams.core.pipeline import StageConfig
from streams.records import Envelope, Identifiers
from streams.settings import REPO_ROOT
from streams.whatif import Offsets, Span, main, parse_instant, parse_offsets, parser, replay, report

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


# --- what to replay: the options and the offsets each partition is read between ---------

def test_offsets_are_one_for_every_partition_or_a_list_of_partitions() -> None:
    assert parse_offsets("1200") == Offsets(every=1200)
    assert parse_offsets(" 0:1200, 3:800 ") == Offsets(listed={0: 1200, 3: 800})
    every, listed = Offsets(every=7), Offsets(listed={2: 5})
    assert (every.at(0), every.at(9), listed.at(2), listed.at(0)) == (7, 7, 5, None)
    assert not Offsets().given and every.given and listed.given
    with pytest.raises(ValueError, match=re.escape("partition 0 is given twice in '0:5,0:6'")):
        parse_offsets("0:5,0:6")


@pytest.mark.parametrize(("text", "message"), [
    ("", "offset '' is not a whole number >= 0"),
    ("-1", "offset '-1' is not a whole number >= 0"),
    ("+1", "offset '+1' is not"),
    ("²", "offset '²' is not"),
    ("1e3", "offset '1e3' is not"),
    ("0:", "offset '' is not"),
    ("x:5", "partition 'x' is not"),
    ("0:5,7", "'7' has no partition: in a list every item is P:N"),
    ("0:5,", "'' has no partition"),
    ("0:5:6", "offset '5:6' is not"),
])
def test_malformed_offsets_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_offsets(text)
    assert "OFFSETS is N for every partition, or P:N[,P:N...]" in str(caught.value)


def test_instants_need_a_zone() -> None:
    assert parse_instant("2026-11-29T00:00:00Z") == datetime(2026, 11, 29, tzinfo=UTC)
    with pytest.raises(ValueError, match="has no time zone"):
        parse_instant("2026-11-29T00:00:00")
    with pytest.raises(ValueError, match="is not an ISO 8601 instant"):
        parse_instant("yesterday")


@pytest.mark.parametrize(("span", "message"), [
    ({}, "say where to start: --from TIME or --from-offset OFFSETS"),
    ({"to_offsets": Offsets(every=5)}, "say where to start"),
    ({"start": T0, "end": T0}, "nothing to replay: --to"),
    ({"start": T0.replace(tzinfo=None)}, "need a time zone"),
    ({"from_offsets": Offsets(every=5), "to_offsets": Offsets(every=5)},
     "nothing to replay: --from-offset 5 is not before --to-offset 5"),
    ({"from_offsets": Offsets(listed={0: 1, 2: 9}), "to_offsets": Offsets(every=4)},
     "nothing to replay on partition 2: --from-offset 9 is not before --to-offset 4"),
    ({"from_offsets": Offsets(every=9), "to_offsets": Offsets(listed={1: 3})},
     "on partition 1: --from-offset 9"),
    ({"start": T0, "to_offsets": Offsets(every=0)},
     "nothing to replay: --to-offset 0 ends before the first record"),
    ({"from_offsets": Offsets(listed={0: 0}), "to_offsets": Offsets(listed={2: 0})},
     "nothing to replay on partition 2: --to-offset 0"),
])
def test_a_span_that_cannot_replay_anything_is_refused(span: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Span(**span)


def test_lists_choose_the_partitions_and_single_offsets_apply_to_each() -> None:
    assert Span(start=T0).partitions([2, 0, 1], "t") == [0, 1, 2]
    assert Span(from_offsets=Offsets(every=3)).partitions([0, 1, 2], "t") == [0, 1, 2]
    span = Span(from_offsets=Offsets(listed={2: 10}), to_offsets=Offsets(listed={0: 5}))
    assert span.partitions([0, 1, 2], "t") == [0, 2]
    with pytest.raises(ValueError, match=re.escape("t has no partition 7, 9 (its partitions: "
                                                   "0, 1, 2)")):
        Span(from_offsets=Offsets(listed={7: 0, 9: 0, 1: 0})).partitions([0, 1, 2], "t")


def test_every_bound_given_applies_on_each_partition() -> None:
    offsets = Span(from_offsets=Offsets(every=10), to_offsets=Offsets(listed={0: 20}))
    assert offsets.window(0, 0, 100, None) == (10, 20)
    assert offsets.window(1, 0, 100, None) == (10, 100)  # no end given: the partition's
    assert offsets.window(0, 15, 100, None) == (15, 20)  # retention took 10-14 away
    assert offsets.window(0, 0, 12, None) == (10, 12)  # never past the end it has now
    assert offsets.window(0, 0, 10, None) is None  # nothing there yet
    both = Span(start=T0, from_offsets=Offsets(every=10))
    assert both.window(0, 0, 100, 40) == (40, 100)  # the later start wins
    assert both.window(0, 0, 100, 4) == (10, 100)
    assert both.window(0, 0, 100, 100) is None  # nothing stamped at or after --from
    assert Span(start=T0).window(0, 3, 100, 3) == (3, 100)


def test_the_command_line_builds_the_span_or_says_why_not(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["d", "--from-offset", "0:1200,3:800", "--to-offset", "1500",
                                "--to", "2026-11-30T00:00:00+01:00"])
    span = Span(args.start, args.end, args.from_offset, args.to_offset)
    assert span == Span(end=datetime(2026, 11, 29, 23, tzinfo=UTC),
                        from_offsets=Offsets(listed={0: 1200, 3: 800}),
                        to_offsets=Offsets(every=1500))
    for argv, message in [
            (["--from-offset", "-1"], "argument --from-offset: offset '-1' is not"),
            (["--to-offset", "0:1,0:2"], "argument --to-offset: partition 0 is given twice"),
            (["--from", "2026-11-29"], "argument --from: '2026-11-29' has no time zone"),
            (["--to-offset", "9"], "say where to start"),
            (["--from-offset", "0:9", "--to-offset", "0:9"], "nothing to replay on partition 0")]:
        with pytest.raises(SystemExit) as exit_:
            main(["d", *argv])  # refused before any settings or broker are needed
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
