"""Re-slotting the identity stage's state between layouts (design step 7): pure.

The identity stage runs on one partition (the single layout: store ``identity``) or on
N slots (the partitioned layout: store ``ident``, one changelog partition per slot).
Both hold the same families with the same value formats (streams/core/keys.py), so a
migration is a re-placement of every key, with the placement rules of the partitioned
layout (docs/partitioned-identity.md, 2.2):

- ``i:``/``iv:``/``x:`` named by an identifier key: ``key_slot(key)``;
- ``r:``/``k:``/``v:`` named by a profile id: ``profile_slot(pid)``;
- ``d:`` markers: the slot of the event's home key (its strongest identifier), which
  the marker does not name: the caller finds it (from the marker's origin record) and
  a marker whose home cannot be known is written to every slot (a copy outside the
  home slot is never read by an arrival, and expires with the dedup window).

One function does 1 -> N, N -> M and N -> 1: the union of the source slots is the one
logical store, placed again. The versions ``iv:``/``v:`` and the tick barrier's
``tk:last`` are the partitioned layout's own: kept between partitioned layouts (the
last at the coordinator slot), dropped for the single layout (which does not maintain
them, so they would be stale after a run on it; absent reads as 0, or no tick yet).

Transient protocol state (claims, locks, home guards, waiters, erasures in progress,
ticks waiting at the barrier, markers of undecided events) means the deployment was
not drained: refused, since there is no correct place for a ticket in flight in
another layout. The stores' metadata (``\\x00...``: applied input offsets) is dropped:
it names offsets of the old input partitions, which a drained deployment will never
see again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from streams.core.identity_tick import COORDINATOR, PENDING
from streams.core.routing import key_slot, profile_slot
from streams.errors import ActivationError

BY_KEY = (b"i:", b"iv:", b"x:")  # named by an identifier key
BY_PROFILE = (b"r:", b"k:", b"v:")  # named by a profile id
MARKER = b"d:"
TICKS = b"tk:"  # the tick barrier's coordinator: the last instant sent on (identity_tick.py)
SLOTS_ONLY = (b"iv:", b"v:", TICKS)  # the partitioned layout's own
TRANSIENT = (b"c:", b"l:", b"g:", b"w:", b"wq:", b"e:", PENDING)
META = b"\x00"
# Every family of streams/core/keys.py's IDENTITY (longest first where one is a prefix).
FAMILIES = (*BY_KEY, *BY_PROFILE, MARKER, *TRANSIENT, TICKS)

Pairs = Iterable[tuple[bytes, bytes]]
# (event id, marker) -> the event's home key, or None when it cannot be known.
HomeOf = Callable[[str, bytes], str | None]


class MigrationError(ActivationError):
    """The identity state cannot be migrated as it is (says what to do)."""


class NotDrainedError(MigrationError):
    """Transient protocol state: events or protocol messages were still in flight."""


def family(key: bytes) -> bytes | None:
    """The family of ``key`` (None: store metadata)."""
    if key.startswith(META):
        return None
    for prefix in FAMILIES:
        if key.startswith(prefix):
            return prefix
    raise MigrationError(f"unknown key family in the identity state: {key[:40]!r}; "
                         "this tool does not know where it belongs (streams/core/keys.py)")


def marker_pid(raw: bytes) -> str:
    return str(json.loads(raw).get("pid", ""))


def marker_origin(raw: bytes) -> str:
    return str(json.loads(raw).get("origin", ""))


@dataclass(frozen=True)
class Source:
    """The source layout's state: one mapping per slot (one for the single layout)."""

    slots: list[dict[bytes, bytes]]

    @classmethod
    def of(cls, stores: Iterable[Pairs]) -> Source:
        return cls([dict(store) for store in stores])

    def union(self, home_of: HomeOf | None = None) -> dict[bytes, bytes]:
        """The one logical store: every key once (refusing transient state)."""
        union: dict[bytes, bytes] = {}
        for slot, store in enumerate(self.slots):
            for key, value in store.items():
                fam = family(key)
                if fam is None:
                    continue
                _refuse_transient(fam, key, value, slot)
                union[key] = self._pick(union.get(key), key, value, slot, home_of)
        return union

    def _pick(self, have: bytes | None, key: bytes, value: bytes, slot: int,
              home_of: HomeOf | None) -> bytes:
        """A key found in two source slots: only markers may be (copies written to every
        slot by an earlier migration); the home slot's copy is the one kept up to date."""
        if have is None or have == value:
            return value
        if not key.startswith(MARKER):
            raise MigrationError(f"{key[:60]!r} is in two slots with different values: the "
                                 "source state is inconsistent; restore it from a backup")
        home = home_of(key[len(MARKER):].decode(), value) if home_of else None
        if home is not None and key_slot(home, len(self.slots)) == slot:
            return value
        return have


def _refuse_transient(fam: bytes, key: bytes, value: bytes, slot: int) -> None:
    if fam in TRANSIENT or (fam == MARKER and marker_pid(value) == ""):
        raise NotDrainedError(
            f"slot {slot} holds transient protocol state ({key[:60]!r}): events or "
            "protocol messages were in flight when the workers stopped. Start them again "
            "with ACTIVATION_SCREENING=off until `scripts/identity migrate --to N "
            "--check-drained` passes, stop them, then migrate")


def place(union: Mapping[bytes, bytes], slots: int, home_of: HomeOf
          ) -> list[dict[bytes, bytes]]:
    """The logical store ``union`` over ``slots`` slots (1: the single layout)."""
    out: list[dict[bytes, bytes]] = [{} for _ in range(slots)]
    for key, value in union.items():
        fam = family(key)
        if fam is None or (slots == 1 and fam in SLOTS_ONLY):
            continue
        for slot in _slots_of(fam, key, value, slots, home_of):
            out[slot][key] = value
    return out


def _slots_of(fam: bytes, key: bytes, value: bytes, slots: int, home_of: HomeOf
              ) -> range | tuple[int]:
    if slots == 1:
        return (0,)
    if fam == TICKS:
        return (COORDINATOR,)
    name = key[len(fam):].decode()
    if fam in BY_KEY:
        return (key_slot(name, slots),)
    if fam in BY_PROFILE:
        return (profile_slot(name, slots),)
    home = home_of(name, value)
    return range(slots) if home is None else (key_slot(home, slots),)


def reslot(stores: Iterable[Pairs], slots: int, home_of: HomeOf) -> list[dict[bytes, bytes]]:
    """The source layout's stores (one per source slot, in slot order) re-placed over
    ``slots`` destination slots. Raises :class:`NotDrainedError` on transient state."""
    if slots < 1:
        raise MigrationError(f"cannot migrate to {slots} slots: at least 1")
    return place(Source.of(stores).union(home_of), slots, home_of)


# --- checks --------------------------------------------------------------------------------


def family_counts(stores: Iterable[Mapping[bytes, bytes]]) -> dict[str, int]:
    """Distinct keys per family over all slots (a marker copied to every slot counts
    once)."""
    seen: dict[bytes, set[bytes]] = {}
    for store in stores:
        for key in store:
            fam = family(key)
            if fam is not None:
                seen.setdefault(fam, set()).add(key)
    return {fam.decode(): len(keys) for fam, keys in sorted(seen.items())}


def misplaced(stores: list[dict[bytes, bytes]], home_of: HomeOf) -> list[str]:
    """Keys that are not in the slot the placement rules give them."""
    n = len(stores)
    problems = []
    for slot, store in enumerate(stores):
        for key, value in store.items():
            fam = family(key)
            if fam is None or n == 1:
                continue
            if slot not in _slots_of(fam, key, value, n, home_of):
                problems.append(f"{key[:60]!r} is in slot {slot}, not where it belongs")
    return problems


def invariant_problems(union: Mapping[bytes, bytes], limit: int = 20) -> list[str]:
    """Design 2.2's invariant on a drained store: every key in ``k:`` of exactly one
    canonical profile (one without ``r:``), and every hint leading there through ``r:``."""
    owner: dict[str, str] = {}
    problems: list[str] = []
    for key, value in union.items():
        if not key.startswith(b"k:"):
            continue
        pid = key[2:].decode()
        if b"r:" + pid.encode() in union:
            continue  # a loser's leftover list (not read: its redirect is)
        for ident in json.loads(value):
            if ident in owner:
                problems.append(f"{ident} is owned by {owner[ident]} and {pid}")
            owner[ident] = pid
    for key, value in union.items():
        if key.startswith(b"i:"):
            ident, pid = key[2:].decode(), _canonical(union, value.decode())
            if owner.get(ident) != pid:
                problems.append(f"hint of {ident} leads to {pid}, which does not own it "
                                f"(owner: {owner.get(ident)})")
    return problems[:limit]


def _canonical(union: Mapping[bytes, bytes], pid: str) -> str:
    seen = {pid}
    while (nxt := union.get(b"r:" + pid.encode())) is not None and nxt.decode() not in seen:
        pid = nxt.decode()
        seen.add(pid)
    return pid
