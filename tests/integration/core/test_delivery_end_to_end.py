"""One event from the ingestion topic to a signed HTTP call: the worker decides, the
executor delivers to a real receiver, and the outcome is on the profile's timeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from streams.activation.distribution import publish
from streams.core.identity import new_profile_id
from streams.serde import AvroSerde
from streams.settings import REPO_ROOT, Settings
from streams.topics import declared_topics
from tests.integration.core.conftest import CoreStack
from tests.integration.core.harness import (
    AUTH,
    REPO,
    Worker,
    as_json,
    encode_all,
    free_port,
    produce,
    settings_env,
    wait_for,
)
from tests.integration.core.test_activation import CLOCK, customer, onboarding, tick
from tests.integration.delivery.conftest import (  # noqa: F401 - fixtures used by name
    SECRET,
    ExecutorProcess,
    Receiver,
    executors,
    receiver,
)
from tests.support.observability import declared, referenced


def test_an_event_becomes_a_signed_call_and_its_outcome_a_timeline_entry(
        core: CoreStack, serde: AvroSerde, workers: Callable[..., Worker],
        receiver: Receiver, executors: Callable[..., ExecutorProcess],  # noqa: F811
        tmp_path: Path) -> None:
    secrets = {"LOCAL_WEBHOOK_SECRET": SecretStr(SECRET)}
    settings = core.settings.model_copy(update={
        "activation_clock": "manual", "delivery_secrets": secrets,
        "delivery_metrics_port": free_port()})
    for spec in declared_topics(settings):  # as bootstrap registers them
        if spec.value_type is not None:
            serde.encoder(spec.value_subject, spec.value_type, register=True)
    defs = REPO_ROOT / "definitions"
    local = (defs / "destinations" / "local_receiver.yaml").read_text()
    root = tmp_path / "defs"
    shutil.copytree(defs, root)
    (root / "destinations" / "local_receiver.yaml").write_text(
        local.replace("http://127.0.0.1:8900/hooks/activation", receiver.url("activation")))
    publish(settings, root, "end-to-end-test")
    worker = workers(settings)
    executor = executors(settings)
    tick(CoreStack(settings, core.ingest, core.dead_letter, core.encode), CLOCK)
    cust = customer("e2e")
    pid = new_profile_id(f"cid:{cust}")
    produce(settings, core.ingest, encode_all(core.encode, onboarding(
        cust, "GRANTED", (CLOCK + timedelta(days=20)).date())))
    # the reminder email and the paid-media add reach the receiver, signed
    wait_for(lambda: len(receiver.got("activation")) >= 2, 90, "two signed calls")
    assert all(r.verified for r in receiver.receipts)
    def delivered() -> list[dict[str, Any]] | None:
        items = as_json(worker.get(f"/v1/profiles/{pid}/timeline?limit=50"))["items"]
        found = [i for i in items if i["event_name"] == "delivery.delivered"]
        return found if len(found) >= 2 else None

    notes = wait_for(delivered, 90, "delivery outcomes on the timeline")
    assert {n["detail"]["channel"] for n in notes} == {"email", "paid_media"}
    assert all(n["detail"]["destination"] == "local_receiver" for n in notes)
    print(json.dumps(notes[0], indent=1))
    # Every metric the alert rules and the dashboard name is exported by a process.
    with gateway_process(settings, tmp_path) as gateway_url:
        pages = [httpx.get(f"{gateway_url}/metrics", headers=AUTH, timeout=10).text,
                 worker.get("/metrics").text, executor.metrics()]
    missing = referenced() - set().union(*(declared(page) for page in pages))
    assert not missing, f"named by observability/ but exported by no process: {missing}"


@contextmanager
def gateway_process(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **settings_env(settings), "ACTIVATION_GATEWAY_PORT": str(port)}
    log = (tmp_path / "gateway.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "ingest"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 60, f"gateway ready (log: {tmp_path / 'gateway.log'})")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
