"""The state key layout: every key family of the stores, in one place.

A store's keys are ``<family>:<name>``. The identity stage's stores (one, or one per
slot) and the profile stage's (one per partition) are separate databases, so a family
letter may mean different things in each. The modules named below own the values;
this module owns the names, and ``tests/unit/core/test_keys.py`` fails when a module
writes a family that is not declared here.

Within a store, every family sorts after ``\\x00`` (the store's own metadata:
``tables/state.py``: the changelog offset, the dirty flag, the applied input offsets)
and none is a prefix of another, so a scan by family never wanders into the next.
"""

from __future__ import annotations

# Identity stage stores (streams/core/identity_stage.py, dedup.py, erasure.py; with
# slots, streams/core/identity_slots.py adds the protocol's resources).
IDENTITY: dict[bytes, str] = {
    b"d:": "dedup marker of an event id (dedup.py)",
    b"i:": "identifier key -> the profile it points to (a hint with slots)",
    b"iv:": "identifier key -> the move version of its hint (slots)",
    b"r:": "profile -> the profile it was merged into",
    b"k:": "profile -> the identifier keys it owns (JSON list)",
    b"v:": "profile -> its directory version (slots)",
    b"x:": "an erased identifier key, suppressed (erasure.py)",
    b"c:": "claim of an unknown identifier key by a ticket (slots)",
    b"l:": "lock of a profile by a ticket (slots)",
    b"g:": "home guard: an undecided event of this home key (slots)",
    b"w:": "a parked waiter on a resource (slots)",
    b"wq:": "a resource's waiter queue bounds (slots)",
    b"e:": "an erasure's keys still to forget (slots: identity_erasure.py)",
    b"tk:": "tick barrier: instants waiting for every slot, the last sent (slots: "
            "identity_tick.py)",
}

# Profile stage stores (streams/core/pipeline.py, unmerge.py, erasure.py and
# streams/activation/runtime.py, notes.py, schedules.py).
PROFILE: dict[bytes, str] = {
    b"p:": "profile (JSON)",
    b"r:": "profile -> the survivor it was merged into on this partition",
    b"h:": "profile -> its merge history (JSON list)",
    b"u:": "profile -> the merges undone (JSON list)",
    b"a:": "profile -> its activation state (runtime.py)",
    b"t:": "timer: due time and profile (runtime.py)",
    b"w:": "profile -> its next wake-up (runtime.py)",
    b"c:": "activation's manual clock (c:clock, runtime.py)",
    b"n:": "profile -> its timeline notes, a ring of keys (notes.py)",
    b"s:": "a schedule's progress on this partition (schedules.py)",
}


def families() -> set[bytes]:
    return set(IDENTITY) | set(PROFILE)
