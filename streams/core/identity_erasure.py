"""An erasure over the identity slots (docs/partitioned-identity.md, 11): the single
layout's ``erase_identity`` (streams/core/erasure.py) as steps of the protocol.

1. ``key``, at the identifier's slot: its hint names the profile (none: nothing known,
   the identifier alone is suppressed and the audit written);
2. ``profile``, along redirects to the canonical profile's slot, where the erasure
   **locks** the profile (``l:``, FIFO behind any ticket holding it, never refused),
   forgets its directory (``k:``) and bumps its version, and counts the keys it must
   forget (``e:<request id>``);
3. ``forget``, at each key's slot: its hint deleted, the key suppressed if the mode
   says so (``x:``), and tickets waiting for a newer hint woken (they find the key
   gone and give up: dead-lettered, re-drivable);
4. ``forgotten``, back at the profile: after the last key, the lock is released, the
   profile stage is told to erase the profile (and those merged into it), and the
   audit and the suppressions go out.

The lock is held from step 2 to 4 so that no ticket reads the profile half-forgotten.
A ticket that locked it before waits for nothing: the erasure waits for it. Redirects
of profiles merged into the erased one stay in their slots (two random ids, no
identifier); the single layout deletes them.
"""

from __future__ import annotations

import json
import sys

from streams.core import identity_slots as slots
from streams.core.erasure import Request, audit_of
from streams.core.identity_messages import Erase
from streams.core.identity_outputs import Erased, ProfileCommand
from streams.core.identity_slots import Tx
from streams.core.identity_stage import StoreView
from streams.core.profile import from_micros
from streams.core.routing import ERASE


def _holder(request: Request) -> str:
    return "erase:" + request.request_id


def erase(tx: Tx, m: Erase) -> None:
    request = Request.from_json(m.request.encode())
    {"key": _at_key, "profile": _at_profile, "forget": _forget,
     "forgotten": _forgotten}[m.step](tx, m, request)


def _at_key(tx: Tx, m: Erase, request: Request) -> None:
    if tx.key_slot(request.identifier) != tx.slot:
        tx.send(tx.key_slot(request.identifier), m)
        return
    pid = slots.hint_pid(tx.store, request.identifier)
    if pid is not None:
        tx.send(tx.profile_slot(pid), Erase("profile", m.request, m.now_us, pid))
        return
    suppressed = _suppress(tx, request, request.identifier, m.now_us)
    audit = audit_of(request, from_micros(m.now_us), False, 0, 0, len(suppressed))
    tx.emit(Erased(request.request_id, json.dumps(audit), suppressed))


def _at_profile(tx: Tx, m: Erase, request: Request) -> None:
    pid = tx.follow_here(m.pid)
    if tx.profile_slot(pid) != tx.slot:
        tx.send(tx.profile_slot(pid), Erase("profile", m.request, m.now_us, pid))
        return
    holder = _holder(request)
    if slots.holder(tx.store, "l/" + pid) not in (None, holder):
        # Never refused for a long queue: a dropped erasure would forget nobody.
        body = {"step": "profile", "request": m.request, "now_us": m.now_us, "pid": pid}
        slots.park(tx.store, "l/" + pid, slots.waiter("erase", body), sys.maxsize)
        return
    slots.take(tx.store, "l/" + pid, holder)
    keys = sorted({request.identifier, *StoreView(tx.store).owned(pid)})
    if tx.store.get(b"k:" + pid.encode()) is not None:
        del tx.store[b"k:" + pid.encode()]
    slots.set_version(tx.store, pid, 1 + slots.version(tx.store, pid))
    tx.store[_pending(request)] = json.dumps({"left": len(keys), "keys": keys}).encode()
    for key in keys:
        tx.send(tx.key_slot(key), Erase("forget", m.request, m.now_us, pid, key))


def _forget(tx: Tx, m: Erase, request: Request) -> None:
    for family in (b"i:", b"iv:"):
        if tx.store.get(family + m.key.encode()) is not None:
            del tx.store[family + m.key.encode()]
    _suppress(tx, request, m.key, m.now_us)
    tx.hint_written(m.key)  # tickets waiting for a newer hint: it is gone
    tx.send(tx.profile_slot(m.pid), Erase("forgotten", m.request, m.now_us, m.pid, m.key))


def _forgotten(tx: Tx, m: Erase, request: Request) -> None:
    raw = tx.store.get(_pending(request))
    if raw is None:  # not this erasure's (each key answers once): nothing to count
        return
    pending = json.loads(raw)
    if pending["left"] > 1:
        tx.store[_pending(request)] = json.dumps({**pending,
                                                  "left": pending["left"] - 1}).encode()
        return
    del tx.store[_pending(request)]
    tx.release("l/" + m.pid, _holder(request))
    keys = tuple(pending["keys"])
    suppressed = keys if request.mode == "suppress_with_delete" else ()
    body = json.dumps({"request": json.loads(request.to_json()), "profile_id": m.pid})
    tx.emit(ProfileCommand(ERASE, m.pid, body.encode()))
    audit = audit_of(request, from_micros(m.now_us), True, len(keys), 1, len(suppressed))
    tx.emit(Erased(request.request_id, json.dumps(audit), suppressed))


def _suppress(tx: Tx, request: Request, key: str, now_us: int) -> tuple[str, ...]:
    """The key's suppression marker (``suppress_with_delete``), as the single layout's."""
    if request.mode != "suppress_with_delete":
        return ()
    tx.store[b"x:" + key.encode()] = json.dumps(
        {"request_id": request.request_id, "at_us": now_us}).encode()
    return (key,)


def _pending(request: Request) -> bytes:
    return b"e:" + request.request_id.encode()
