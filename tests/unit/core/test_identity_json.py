"""The identity protocol's JSON fast paths against the json module they replace."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from streams.core.identity_markers import with_pid
from streams.core.identity_slots import waiter, waiter_of
from streams.core.identity_stage import marker_seen_us, new_marker

texts = st.text(max_size=12)


@given(st.integers(0, 2**62), texts, texts, texts)
def test_setting_the_profile_writes_what_json_writes(seen: int, origin: str, old: str,
                                                     pid: str) -> None:
    for marker in ({"seen_us": seen, "origin": origin, "pid": old},
                   {"seen_us": seen, "origin": origin},
                   {"seen_us": seen, "origin": origin, "pid": old, "dups": [origin]},
                   {"seen_us": seen, "origin": origin, "dups": []}):
        raw = json.dumps(marker).encode()
        assert with_pid(raw, pid) == json.dumps({**json.loads(raw), "pid": pid}).encode()
        assert marker_seen_us(with_pid(raw, pid)) == seen


def test_a_marker_of_the_usual_fields_is_the_same_bytes_as_new_marker() -> None:
    raw = new_marker(7, "events.ingest:0:1", "")
    assert with_pid(raw, "p-é") == new_marker(7, "events.ingest:0:1", "p-é")


@given(st.sampled_from(["event", "absorb"]),
       st.dictionaries(texts, st.one_of(st.integers(-2**62, 2**62), texts,
                                        st.lists(texts, max_size=3), st.none()),
                       max_size=5))
def test_a_waiter_reads_back_whichever_json_wrote_it(kind: str, body: dict[str, object]
                                                     ) -> None:
    assert waiter_of(waiter(kind, body)) == (kind, body)
    # parked by an earlier version (json.dumps): still read
    assert waiter_of(json.dumps({"kind": kind, "body": body}).encode()) == (kind, body)
