"""The state key layout has one owner (streams/core/keys.py): every family a module
writes is declared there, and no family is a prefix of another."""

from __future__ import annotations

import re

from streams.core import keys
from streams.settings import REPO_ROOT

FAMILY = re.compile(rb'b"([a-z]{1,3}:)')


def test_every_family_in_the_code_is_declared() -> None:
    used = {m.group(1) for path in (REPO_ROOT / "streams").rglob("*.py")
            for m in FAMILY.finditer(path.read_bytes())}
    assert used, "the scan found no key family at all"
    assert used <= keys.families(), f"undeclared key families: {used - keys.families()}"


def test_no_family_is_a_prefix_of_another_in_one_store() -> None:
    for store in (keys.IDENTITY, keys.PROFILE):
        for a in store:
            assert not [b for b in store if b != a and b.startswith(a)], a
