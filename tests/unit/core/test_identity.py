"""Identity resolution: deterministic profile ids and merges, explainable and undoable."""

from __future__ import annotations

from streams.core.identity import (
    MergeRecord,
    identifier_keys,
    new_profile_id,
    resolve,
    undo_links,
)
from streams.records import Identifiers


def test_keys_are_typed_strongest_first() -> None:
    ids = Identifiers(customer_id="c", email_sha256="e", phone_sha256="p", anonymous_id="a")
    assert identifier_keys(ids) == ["cid:c", "em:e", "ph:p", "anon:a"]


def test_new_customer_gets_id_of_strongest_key_and_links_all() -> None:
    res = resolve(["cid:c", "anon:a"], lambda key: None)
    assert res.created and res.profile_id == new_profile_id("cid:c")
    assert res.links == {"cid:c": res.profile_id, "anon:a": res.profile_id}
    assert res.losers == ()


def test_known_customer_links_only_new_identifiers() -> None:
    graph = {"cid:c": "p-1"}
    res = resolve(["cid:c", "em:e"], graph.get)
    assert (res.profile_id, res.created, res.links) == ("p-1", False, {"em:e": "p-1"})


def test_merge_is_deterministic_smallest_id_wins() -> None:
    graph = {"cid:c": "p-b", "anon:a": "p-a", "em:e": "p-c"}
    for keys in (["cid:c", "em:e", "anon:a"], ["anon:a", "cid:c", "em:e"]):
        res = resolve(keys, graph.get)
        assert res.profile_id == "p-a" and res.losers == ("p-b", "p-c")
        assert res.links == {"cid:c": "p-a", "em:e": "p-a"}
        assert res.linking_keys == ("anon:a", "cid:c", "em:e")


def test_merge_record_roundtrip_explain_and_undo() -> None:
    rec = MergeRecord("ev1", 1_700_000_000_000_000, "p-a", "p-b", ("anon:a", "cid:c"),
                      ("cid:c", "em:e"), '{"profile_id": "p-b"}')
    assert MergeRecord.from_dict(rec.to_dict()) == rec
    explained = rec.explain()
    assert "loser_snapshot" not in explained and explained["merged_at"].endswith("+00:00")
    assert undo_links(rec) == {"cid:c": "p-b", "em:e": "p-b"}
