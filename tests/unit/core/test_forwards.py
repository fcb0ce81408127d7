"""How a stage's outputs become records of the profile topic (agents/owned.py:forwards):
events batched per partition, in order; a command after the events sent before it to
its partition; a broadcast to every partition."""

from __future__ import annotations

from agents.owned import forwards
from streams.core.batch import BatchItem, decode_batch
from streams.core.routing import COMMAND_HEADER, MERGE_OUT, TICK, partition_of
from streams.core.stages.outputs import Broadcast, Command, Resolved

PARTITIONS = 3


def item(n: int, pid: str) -> Resolved:
    return Resolved(BatchItem(f"events.ingest:0:{n}", None, b"v", pid))


def pids_in(partition: int) -> list[str]:
    return [p for p in (f"p-{n}" for n in range(50)) if partition_of(p, PARTITIONS) == partition]


def test_a_merge_out_follows_the_losers_earlier_events_and_batches_stay_in_order() -> None:
    loser, other = pids_in(0)[:2]
    elsewhere = pids_in(1)[0]
    records = forwards([item(1, loser), item(2, elsewhere), item(3, other),
                        Command(MERGE_OUT, loser, b"{}"), item(4, loser)],
                       "internal.profiles", PARTITIONS)
    zero = [r for r in records if r.partition == 0]
    assert [COMMAND_HEADER in r.headers for r in zero] == [False, True, False]
    assert [i.origin for i in decode_batch(zero[0].value)] == [
        "events.ingest:0:1", "events.ingest:0:3"]
    assert zero[1].key == loser.encode() and zero[1].headers[COMMAND_HEADER] == MERGE_OUT
    assert [i.profile for i in decode_batch(zero[2].value)] == [loser]
    (one,) = [r for r in records if r.partition == 1]
    assert [i.profile for i in decode_batch(one.value)] == [elsewhere]


def test_a_broadcast_reaches_every_partition_after_its_pending_events() -> None:
    first = pids_in(2)[0]
    records = forwards([item(1, first), Broadcast(TICK, b"{}")], "t", PARTITIONS)
    assert [(r.partition, COMMAND_HEADER in r.headers) for r in records] == [
        (0, True), (1, True), (2, False), (2, True)]


def test_protocol_messages_travel_one_record_per_slot_in_order() -> None:
    from agents.identity import coalesce
    from streams.core.identity_messages import Release, decode, decode_many, encode
    from streams.core.routing import IDENTITY_PROTOCOL
    from streams.core.stages.outputs import ToIdentity

    messages = [(n % 3, Release(f"t{n}", f"l/p{n}")) for n in range(10)]
    sends = [ToIdentity(IDENTITY_PROTOCOL, "", encode(m), slot) for slot, m in messages]
    relink = ToIdentity(b"relink", "p9", b"{}", 1)
    records = coalesce([*sends, relink])
    assert records[0] == relink  # anything else passes as it was
    by_slot = {r.partition: decode_many(r.body) for r in records[1:]}
    assert by_slot == {s: [m for slot, m in messages if slot == s] for s in range(3)}
    small = coalesce(sends, limit=2 * len(sends[0].body) + 2)
    assert [len(decode_many(r.body)) for r in small if r.partition == 0] == [2, 2]
    # A record of one message is the single encoding: older workers' records read alike.
    assert decode_many(encode(messages[0][1])) == [decode(encode(messages[0][1]))]
