"""Activation's timeline notes: a ring of the newest ``limit`` records' notes per profile,
beside it, one slot per record."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.activation.notes import adopted, read_notes, write_notes
from streams.core.profile import Profile, timeline_page
from streams.core.sandbox import DictStore


def note(i: int) -> dict[str, Any]:
    return {"event_id": f"n{i}", "event_name": "decision.sent", "time_us": 1_000 + i,
            "summary": f"note {i}", "late": False, "kind": "decision", "detail": {}}


def slots(store: DictStore, pid: str) -> list[bytes]:
    return [k for k in store if k.startswith(b"n:" + pid.encode() + b"\x00")]


def test_one_record_s_notes_take_one_slot() -> None:
    store = DictStore()
    written = write_notes(store, "p1", 0, [note(i) for i in range(3)], limit=4)
    assert written == 1 and len(slots(store, "p1")) == 1
    assert write_notes(store, "p1", written, [], limit=4) == 1  # nothing noted: no write
    assert [n["event_id"] for n in read_notes(store.scan, "p1", 4)] == ["n2", "n1", "n0"]


def test_the_ring_keeps_the_newest_records_notes_in_place() -> None:
    store = DictStore()
    written = 0
    for i in range(6):  # six records, two notes each, in a ring of four slots
        written = write_notes(store, "p1", written, [note(2 * i), note(2 * i + 1)], limit=4)
    assert written == 6 and len(slots(store, "p1")) == 4  # overwritten in place
    # the page shows the newest ``limit`` notes of what the ring keeps
    assert [n["event_id"] for n in read_notes(store.scan, "p1", 4)] == ["n11", "n10", "n9",
                                                                         "n8"]
    assert read_notes(store.scan, "p1-other", 4) == []  # another profile's prefix is its own


def test_a_record_with_more_notes_than_the_limit_keeps_its_newest() -> None:
    store = DictStore()
    write_notes(store, "p1", 0, [note(i) for i in range(5)], limit=2)
    assert [n["event_id"] for n in read_notes(store.scan, "p1", 5)] == ["n4", "n3"]


def test_slots_written_one_note_each_before_still_read() -> None:
    store = DictStore()
    store[b"n:p1\x00000000"] = msgspec.json.encode(note(1))  # the format before
    write_notes(store, "p1", 1, [note(2), note(3)], limit=4)
    assert [n["event_id"] for n in read_notes(store.scan, "p1", 4)] == ["n3", "n2", "n1"]


def test_a_note_written_twice_reads_once() -> None:
    store = DictStore()
    written = write_notes(store, "p1", 0, [note(1), note(2)], limit=10)
    write_notes(store, "p1", written, [note(1)], limit=10)
    assert [n["event_id"] for n in read_notes(store.scan, "p1", 10)] == ["n2", "n1"]


def test_the_timeline_page_interleaves_events_and_notes() -> None:
    events = [{"event_id": "e1", "event_name": "identify", "time_us": 1_002, "summary": "",
               "late": False}]
    page = timeline_page(Profile("p1", timeline=events), 0, 2, [note(3), note(1)])
    assert [i["event_id"] for i in page["items"]] == ["n3", "e1"]
    assert page["total"] == 3 and page["next_offset"] == 2


def test_adopted_notes_name_the_profile_they_came_from() -> None:
    assert adopted([note(1)], "loser")[0]["detail"] == {"profile_id": "loser"}
    deeper = {**note(2), "detail": {"profile_id": "first"}}
    assert adopted([deeper], "loser")[0]["detail"] == {"profile_id": "first"}
