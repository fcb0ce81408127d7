"""The right to be forgotten through a real worker and broker: after an erasure no API
returns anything of the customer, downstream gets an erase command, a fresh worker
rebuilt from the changelogs knows nothing of them, and a new event with the same email
does not create the profile again."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from streams.activation.distribution import publish
from streams.follower import read_topic
from streams.records import Envelope, Identifiers
from streams.serde import AvroSerde
from streams.settings import REPO_ROOT
from streams.topics import ERASURES, action_topic, declared_topics
from tests.integration.core.conftest import LAYOUTS, CoreStack
from tests.integration.core.harness import AUTH, Worker, as_json, encode_all, produce, wait_for

EMAIL = "ada@example.com"


def event(event_id: str, ids: Identifiers) -> Envelope:
    now = datetime.now(UTC)
    return Envelope(event_id=event_id, event_name="identify", event_time=now,
                    received_time=now, source="crm", identifiers=ids,
                    properties={"plan": "pro"})


def audit_of(core: CoreStack, request_id: str) -> dict[str, Any] | None:
    for msg in read_topic(core.settings, core.settings.topic(ERASURES)):
        doc = json.loads(msg.value())
        if doc["request_id"] == request_id:
            return dict(doc)
    return None


@LAYOUTS
def test_erasure_forgets_everywhere_and_suppresses(
        core: CoreStack, serde: AvroSerde, workers: Callable[..., Worker]) -> None:
    for spec in declared_topics(core.settings):
        if spec.value_type is not None:
            serde.encoder(spec.value_subject, spec.value_type, register=True)
    publish(core.settings, REPO_ROOT / "definitions", "erasure-test")
    worker = workers(core.settings)
    produce(core.settings, core.ingest, encode_all(core.encode, [
        event("e1", Identifiers.from_clear(customer_id="ada", email=EMAIL)),
        event("e2", Identifiers.from_clear(anonymous_id="dev-9", email=EMAIL)),
        event("e3", Identifiers.from_clear(customer_id="bob"))]))
    found = wait_for(lambda: worker.get("/v1/profiles?anonymous_id=dev-9").status_code == 200
                     and worker.get("/v1/profiles?customer_id=bob").status_code == 200
                     and as_json(worker.get("/v1/profiles?customer_id=ada")), 60, "profiles")
    pid = found["profile_id"]
    resp = httpx.post(f"{worker.base}/v1/erasures", json={"email": EMAIL}, headers=AUTH,
                      timeout=10)
    assert resp.status_code == 202, resp.text
    request_id = resp.json()["request_id"]
    audit = wait_for(lambda: audit_of(core, request_id), 60, "the audit record")
    assert audit["found"] and audit["identifiers_erased"] == 3
    assert EMAIL not in json.dumps(audit) and "ada" not in audit.values()  # no personal data
    gone = ("/v1/profiles?customer_id=ada", "/v1/profiles?anonymous_id=dev-9",
            f"/v1/profiles/{pid}", f"/v1/profiles/{pid}/timeline",
            f"/v1/profiles/{pid}/activation")
    wait_for(lambda: all(worker.get(p).status_code == 404 for p in gone), 60, "404s")
    erase_cmds = wait_for(lambda: [
        m for m in read_topic(core.settings, core.settings.topic(action_topic("email")))
        if serde.decode(m.value())[1]["action_type"] == "erase_profile"], 60, "erase commands")
    assert serde.decode(erase_cmds[0].value())[1]["profile_id"] == pid
    # A new event with the same email creates nothing: it is suppressed (and counted).
    produce(core.settings, core.ingest, encode_all(core.encode, [
        event("e4", Identifiers.from_clear(email=EMAIL))]))
    wait_for(lambda: _suppressed(worker) >= 1, 60, "the suppressed event counted")
    assert all(worker.get(p).status_code == 404 for p in gone)
    # A fresh worker, rebuilt from the changelogs, knows nothing of her (and Bob still).
    worker.stop()
    fresh = workers(core.settings, data_dir=core.settings.data_dir.parent / "rebuilt")
    wait_for(lambda: fresh.get("/v1/profiles?customer_id=bob").status_code == 200, 90,
             "the rebuilt worker")
    # Each profile partition is claimed once its changelog is read; until then the
    # worker answers 503 (restoring), which says nothing either way: wait it out.
    statuses = wait_for(lambda: _settled([fresh.get(p).status_code for p in gone]), 90,
                        "every store of the rebuilt worker restored")
    assert statuses == [404] * len(gone), dict(zip(gone, statuses, strict=True))


def _settled(statuses: list[int]) -> list[int] | None:
    return None if 503 in statuses else statuses


def _suppressed(worker: Worker) -> float:
    total = 0.0
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith("activation_stream_events_total") and 'outcome="suppressed"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
