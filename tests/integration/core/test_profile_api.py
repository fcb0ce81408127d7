"""The profile API on the worker: lookups, merges, timeline pages, late events, 404s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from streams.records import Envelope, Identifiers
from tests.integration.core.conftest import CoreStack
from tests.integration.core.events import BASE_TIME, page_view, purchase
from tests.integration.core.harness import Worker, as_json, encode_all, produce, wait_for


def consent(event_id: str, status: str, at_s: int) -> Envelope:
    when = BASE_TIME + timedelta(seconds=at_s)
    return Envelope(event_id=event_id, event_name="consent_updated", event_time=when,
                    received_time=when, source="kafka:test",
                    identifiers=Identifiers(customer_id="c1"),
                    payload={"consent_type": "marketing:email", "status": status})


def anonymous_view(event_id: str, anon: str, customer: str | None = None) -> Envelope:
    return Envelope(event_id=event_id, event_name="page_viewed", event_time=BASE_TIME,
                    received_time=BASE_TIME, source="kafka:test",
                    identifiers=Identifiers(customer_id=customer, anonymous_id=anon))


def test_profile_api_merges_order_and_not_found(
    core: CoreStack, workers: Callable[..., Worker]
) -> None:
    worker = workers(core.settings)
    first = [purchase("p1", "c1", "20.00"), anonymous_view("v1", "a1"),
             *[page_view(f"pv{i}", "c1", BASE_TIME + timedelta(seconds=i)) for i in range(5)],
             consent("k-new", "DENIED", 100)]
    produce(core.settings, core.ingest, encode_all(core.encode, first))

    def by_customer() -> Any:
        resp = worker.get("/v1/profiles?customer_id=c1")
        return as_json(resp) if resp.status_code == 200 and "marketing:email" in as_json(
            resp)["consent"] else None

    wait_for(by_customer, 60, "c1's profile")
    anon = wait_for(lambda: worker.get("/v1/profiles?anonymous_id=a1").status_code == 200
                    and as_json(worker.get("/v1/profiles?anonymous_id=a1")), 60, "a1")
    # A late, older consent event, and the event that links a1 to c1.
    produce(core.settings, core.ingest, encode_all(core.encode, [
        consent("k-old", "GRANTED", 10), anonymous_view("link", "a1", customer="c1")]))

    def merged() -> Any:
        """The merge carried out: the loser's state folded into the winner (a merge
        crosses profile partitions in two steps, so the linking event may show first)."""
        pid = as_json(worker.get("/v1/profiles?customer_id=c1"))["profile_id"]
        if not as_json(worker.get(f"/v1/profiles/{pid}/merges"))["merges"]:
            return None
        # Read again: the merge history and the merged profile commit together.
        body = as_json(worker.get("/v1/profiles?customer_id=c1"))
        return body if body["identifiers"].get("anonymous_id") == ["a1"] else None

    profile = wait_for(merged, 60, "the merge of a1 into c1's profile")
    pid = profile["profile_id"]
    assert profile["consent"] == {"marketing:email": "DENIED"}  # the older event lost
    assert profile["aggregates"]["order_count"] == 1
    assert as_json(worker.get("/v1/profiles?anonymous_id=a1"))["profile_id"] == pid
    loser = anon["profile_id"] if anon["profile_id"] != pid else None
    if loser is not None:  # the loser's id still answers, with the merged profile
        assert as_json(worker.get(f"/v1/profiles/{loser}"))["profile_id"] == pid

    merges = as_json(worker.get(f"/v1/profiles/{pid}/merges"))["merges"]
    assert len(merges) == 1 and merges[0]["event_id"] == "link"
    assert merges[0]["winner"] == pid and set(merges[0]["linking_keys"]) == {"cid:c1", "anon:a1"}

    page = as_json(worker.get(f"/v1/profiles/{pid}/timeline?limit=3"))
    assert page["total"] == 10 and len(page["items"]) == 3 and page["next_offset"] == 3
    assert page["items"][0]["event_id"] == "k-new"
    rest = as_json(worker.get(f"/v1/profiles/{pid}/timeline?offset=3&limit=50"))
    items = {i["event_id"]: i for i in page["items"] + rest["items"]}
    assert set(items) == {e.event_id for e in first} | {"k-old", "link"}
    assert items["k-old"]["late"] is True and items["k-new"]["late"] is False

    # Undo the merge: a1 gets its own profile back, c1 keeps its purchase.
    assert worker.post(f"/v1/profiles/{pid}/merges/nope/undo").status_code == 404
    assert worker.post(f"/v1/profiles/{pid}/merges/link/undo").status_code == 202

    def split() -> Any:
        """Both profiles rebuilt. The undo is accepted (202) and carried out in steps:
        the identity stage splits the keys, then the profile stage rebuilds the
        profiles, so a lookup can see the new ids before the rebuilt profiles."""
        a = as_json(worker.get("/v1/profiles?anonymous_id=a1"))
        c = as_json(worker.get("/v1/profiles?customer_id=c1"))
        if a["profile_id"] == c["profile_id"] or "customer_id" in a["identifiers"] \
                or a["aggregates"]["order_count"] != 0:
            return None
        return a, c

    anon_after, cust_after = wait_for(split, 60, "a1 and c1 split apart again")
    assert pid in {anon_after["profile_id"], cust_after["profile_id"]}  # the winner's id stays
    assert anon_after["aggregates"]["order_count"] == 0
    assert cust_after["aggregates"]["order_count"] == 1
    assert "anonymous_id" not in cust_after["identifiers"]
    assert "customer_id" not in anon_after["identifiers"]
    assert as_json(worker.get(f"/v1/profiles/{pid}/merges"))["merges"] == []

    missing = worker.get("/v1/profiles/p-nobody")
    assert missing.status_code == 404
    assert as_json(missing)["error"]["code"] == "profile_not_found"
    assert worker.get("/v1/profiles?customer_id=nobody").status_code == 404
    assert worker.get("/v1/profiles").status_code == 400
