"""An erasure over the identity slots (streams/core/identity_erasure.py) against the
single layout's erase_identity: the same identifiers forgotten and suppressed, the
profile stage told once, nothing left held, and tickets racing it never resurrect
an erased key silently."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from streams.core.erasure import Request, erase_identity
from streams.core.identity import new_profile_id
from streams.core.identity_messages import Erase
from streams.core.identity_outputs import Erased, ProfileCommand
from streams.core.profile import micros
from streams.core.routing import ERASE, key_slot
from tests.unit.core.partitioned import SCREENING, Partitioned, dump
from tests.unit.core.test_identity_protocol import NOW, T0, at_rest, env, feed, named

SLOTS = 3


def request(identifier: str, mode: str = "suppress_with_delete", rid: str = "r1") -> Request:
    return Request(rid, identifier, mode, "test", NOW)  # type: ignore[arg-type]


def erase(part: Partitioned, req: Request, at_slot: int = 0) -> None:
    """The worker's wiring: the command read at some slot becomes the first step."""
    part._queue(SCREENING, at_slot, Erase("key", req.to_json().decode(), micros(NOW)))


def outputs(part: Partitioned) -> tuple[list[ProfileCommand], list[Erased]]:
    done = [o for _, o in part.to_profiles]
    return ([o for o in done if isinstance(o, ProfileCommand)],
            [o for o in done if isinstance(o, Erased)])


def merged_customer(part: Partitioned) -> tuple[list[str], str]:
    """One customer whose three identifiers live in three slots, merged into one."""
    keys = [named("cid", 0, SLOTS), named("em", 1, SLOTS), named("anon", 2, SLOTS)]
    feed(part, *[env(f"own{i}", T0 + timedelta(seconds=i), k) for i, k in enumerate(keys)],
         env("link", T0 + timedelta(seconds=9), *keys))
    part.run()
    return keys, min(new_profile_id(k) for k in keys)


@pytest.mark.parametrize("mode", ["suppress_with_delete", "delete"])
@pytest.mark.parametrize("by", [0, 1, 2])
def test_an_erasure_forgets_every_key_of_the_canonical_profile(mode: str, by: int) -> None:
    part = Partitioned(SLOTS)
    keys, pid = merged_customer(part)
    single = dict(part.graph())  # what one store would hold: the single layout's input
    erase(part, request(keys[by], mode), at_slot=(by + 1) % SLOTS)
    part.run()
    expected = erase_identity(single, lambda prefix, limit: sorted(
        (k, v) for k, v in single.items() if k.startswith(prefix))[:limit],
        request(keys[by], mode), NOW)
    graph = part.graph((b"i:", b"k:", b"x:"))
    assert not [k for k in graph if k.startswith((b"i:", b"k:"))], dump(graph)
    suppressed = sorted(k[2:].decode() for k in graph if k.startswith(b"x:"))
    assert suppressed == sorted(expected.suppressed)
    commands, erased = outputs(part)
    assert commands == [ProfileCommand(ERASE, pid, json.dumps(
        {"request": json.loads(request(keys[by], mode).to_json()), "profile_id": pid}
    ).encode())]
    [done] = erased
    audit = json.loads(done.audit)
    assert audit["found"] and audit["identifiers_erased"] == 3
    assert audit["identifiers_suppressed"] == len(expected.suppressed)
    assert sorted(done.suppressed) == sorted(expected.suppressed)
    assert not [k for s in part.stores for k in s if k.startswith(b"e:")]
    at_rest(part)


def test_an_unknown_identifier_is_only_suppressed() -> None:
    part = Partitioned(SLOTS)
    erase(part, request("em:nobody"))
    part.run()
    commands, [done] = outputs(part)
    assert commands == [] and done.suppressed == ("em:nobody",)
    assert not json.loads(done.audit)["found"]
    assert b"x:em:nobody" in part.stores[key_slot("em:nobody", SLOTS)]


def test_an_event_after_the_erasure_is_dropped_as_suppressed() -> None:
    part = Partitioned(SLOTS)
    keys, _ = merged_customer(part)
    erase(part, request(keys[0]))
    part.run()
    feed(part, env("again", T0 + timedelta(hours=1), keys[1]))
    part.run()
    assert [d.event_id for d in part.dropped] == ["again"]
    assert not [k for k in part.graph() if k.startswith((b"i:", b"k:"))]


@pytest.mark.parametrize("seed", range(25))
def test_events_racing_an_erasure_leave_nothing_held_and_resurrect_nothing(seed: int) -> None:
    """Any interleaving of an erasure with events of the same customer: every event is
    decided, dropped or dead-lettered (a ticket that finds a key gone under it gives
    up: a dead letter to re-drive); at rest nothing is held; and no key of the erased
    customer points anywhere (suppress mode): an event decided before the erasure
    locked the profile was forgotten with it, one after was dropped."""
    rng = random.Random(seed)
    part = Partitioned(SLOTS)
    keys, _ = merged_customer(part)
    erase(part, request(keys[rng.randrange(3)]), at_slot=rng.randrange(SLOTS))
    racing = [env(f"race{i}", T0 + timedelta(minutes=i), *rng.sample(keys, rng.randint(1, 3)))
              for i in range(4)]
    feed(part, *racing)
    part.run(lambda n: rng.randrange(n))
    settled = {d.event.event_id for d in part.decisions if hasattr(d, "event")}
    handled = settled | {d.event_id for d in part.dropped} | {
        g.event.event_id for g in part.gave_up}
    assert {e.event_id for e in racing} <= handled
    at_rest(part)
    assert not [k for s in part.stores for k in s if k.startswith(b"e:")]
    [done] = outputs(part)[1]
    assert json.loads(done.audit)["found"]
    hinted = [k for k in keys if part.graph((b"i:",)).get(b"i:" + k.encode())]
    assert hinted == [], dump(part.graph())
