"""Poison records go to the dead-letter topic, byte for byte, and the partition flows on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import Producer

from streams.core.batch import BATCH_HEADER as BATCH
from streams.core.batch import BatchItem, encode_batch
from streams.serde import AvroSerde
from streams.topics import IDENTITY_INPUT
from tests.integration.core.conftest import SINGLE, CoreStack
from tests.integration.core.events import purchase
from tests.integration.core.harness import (
    REPO,
    Worker,
    as_json,
    produce,
    read_all,
    settings_env,
    wait_for,
)

CLI = REPO / "scripts" / "deadletters"
ORIGIN = "x-activation-origin"  # agents/screening.py: an older worker's single forwards


def with_orders(worker: Worker, customer: str, orders: int) -> Callable[[], Any]:
    """A poll for the customer's profile once it counts ``orders`` orders (else None)."""
    def poll() -> Any:
        resp = worker.get(f"/v1/profiles?customer_id={customer}")
        body = as_json(resp) if resp.status_code == 200 else None
        return body if body and body["aggregates"]["order_count"] == orders else None

    return poll


def test_corrupt_and_invalid_records_are_dead_lettered_and_stream_goes_on(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde
) -> None:
    good_before = purchase("e-1", "c1", "5.00")
    no_ids = good_before.to_avro() | {"event_id": "e-noid", "identifiers": {
        "customer_id": None, "email_sha256": None, "phone_sha256": None, "anonymous_id": None}}
    in_1970 = good_before.to_avro() | {"event_id": "e-1970",
                                       "event_time": datetime(1970, 1, 2, tzinfo=UTC)}
    corrupt = b"\x00\x00\x00\x00\x07this is not avro"
    not_framed = b'{"json": "instead of avro"}'
    records: list[tuple[bytes | None, bytes]] = [
        (b"k", core.encode(good_before.to_avro())),
        (b"bad-1", corrupt),
        (b"bad-2", core.encode(no_ids)),
        (b"bad-3", core.encode(in_1970)),
        (None, not_framed),
        *[(b"k", core.encode(purchase(f"e-{i}", "c1", "5.00").to_avro())) for i in (2, 3)],
    ]
    produce(core.settings, core.ingest, records, partition=0)
    worker = workers(core.settings)

    body = wait_for(with_orders(worker, "c1", 3), 60, "the three good purchases on the profile")
    assert Decimal(body["aggregates"]["lifetime_value"]["EUR"]) == Decimal("15.00")

    letters = read_all(core.settings, serde, core.dead_letter, expected=4)
    assert [(d["source_offset"], d["reason_code"]) for d in letters] == [
        (1, "decode_error"), (2, "contract_violation"), (3, "contract_violation"),
        (4, "decode_error")]
    first = letters[0]
    assert first["source_topic"] == core.ingest and first["source_partition"] == 0
    assert first["original_key"] == b"bad-1" and first["original_value"] == corrupt
    assert first["stage"] == "stream.screen" and first["failed_at"].tzinfo is not None
    assert "identifier" in letters[1]["reason"]
    assert "1970" in letters[2]["reason"]
    assert letters[3]["original_key"] is None and letters[3]["original_value"] == not_framed
    assert worker.metric("activation_stream_dead_letters_total") == 4


def test_cli_lists_and_redrives_dead_letters(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde
) -> None:
    stale = purchase("e-old", "c9").to_avro() | {"event_time": datetime(1999, 1, 1, tzinfo=UTC)}
    produce(core.settings, core.ingest, [(b"k9", core.encode(stale))], partition=0)
    worker = workers(core.settings)
    read_all(core.settings, serde, core.dead_letter, expected=1)
    env = {**os.environ, **settings_env(core.settings)}
    listed = subprocess.run([sys.executable, str(CLI), "list"], env=env, capture_output=True,
                            check=True, text=True, timeout=120).stdout.splitlines()
    assert [json.loads(line)["reason_code"] for line in listed] == ["contract_violation"]
    subprocess.run([sys.executable, str(CLI), "redrive"], env=env, check=True, timeout=120)
    # Still invalid: dead-lettered again, with its re-drive count, and the stream goes on.
    letters = read_all(core.settings, serde, core.dead_letter, expected=2)
    assert [d["redrive_count"] for d in letters] == [0, 1]
    assert letters[1]["original_value"] == letters[0]["original_value"]
    assert worker.metric("activation_stream_dead_letters_total") == 2


@SINGLE  # an older worker's forwards: from before the slots
def test_profile_topic_reads_batches_old_single_records_and_parks_unreadable_ones(
    core: CoreStack, workers: Callable[..., Worker], serde: AvroSerde
) -> None:
    """The identity stage's topic as a rolling upgrade finds it: a single event with its
    origin header (an older worker's forward), an unreadable batch record, and a batch;
    then a batch whose event carries unreadable envelope bytes (decoded from its Avro
    value instead: the event is applied, nothing is parked)."""
    topic = core.settings.topic(IDENTITY_INPUT)  # created by the core fixture
    single = core.encode(purchase("e-old-worker", "c7", "1.00").to_avro())
    batch = encode_batch([BatchItem(f"{core.ingest}:0:{i}", b"c7",
                                    core.encode(purchase(f"e-b{i}", "c7", "2.00").to_avro()))
                          for i in (1, 2)])
    garbled = encode_batch([BatchItem(
        f"{core.ingest}:0:3", b"c7", core.encode(purchase("e-b3", "c7", "2.00").to_avro()),
        carried=b"\xc1\xc1\xc1")])
    producer = Producer(core.settings.kafka_client_config())
    producer.produce(topic, key=b"c7", value=single,
                     headers={ORIGIN: f"{core.ingest}:0:0".encode()})
    producer.produce(topic, value=b"\x01\x00\x00\x00\x05truncated", headers={BATCH: b"1"})
    producer.produce(topic, value=batch, headers={BATCH: b"1"})
    producer.produce(topic, value=garbled, headers={BATCH: b"3"})
    assert producer.flush(30) == 0
    worker = workers(core.settings)

    body = wait_for(with_orders(worker, "c7", 4), 60,
                    "the single event and the batches' three on the profile")
    assert Decimal(body["aggregates"]["lifetime_value"]["EUR"]) == Decimal("7.00")
    (letter,) = read_all(core.settings, serde, core.dead_letter, expected=1)
    assert (letter["reason_code"], letter["source_topic"], letter["source_offset"]) == (
        "processing_error", topic, 1)
    assert "batch" in letter["reason"] and letter["stage"] == "stream.identity"
