"""The profile API's key check: the gateway's key store and scopes."""

from __future__ import annotations

import pytest

from agents.auth import authorize
from ingest.auth import ADMIN, KeyRecord, KeyTable, hash_key, new_key

PEPPER = "test-pepper"


@pytest.fixture
def table() -> tuple[KeyTable, dict[str, str]]:
    keys: dict[str, str] = {}
    table = KeyTable(PEPPER)
    for name, scopes in (("reader", ("profiles:read",)), ("writer", ("events:write",)),
                         ("admin", (ADMIN,))):
        key_id, key = new_key()
        table.apply(KeyRecord(key_id, hash_key(key, PEPPER), scopes, name=name), key_id)
        keys[name] = key
    return table, keys


def test_read_scope_reads_and_nothing_else(table: tuple[KeyTable, dict[str, str]]) -> None:
    keys_table, keys = table
    assert authorize(keys_table, f"Bearer {keys['reader']}", "profiles:read")
    assert not authorize(keys_table, f"Bearer {keys['reader']}", "profiles:admin")
    assert not authorize(keys_table, f"Bearer {keys['writer']}", "profiles:read")
    assert authorize(keys_table, f"Bearer {keys['admin']}", "profiles:admin")


def test_missing_or_unknown_key_is_refused(table: tuple[KeyTable, dict[str, str]]) -> None:
    keys_table, _ = table
    assert not authorize(keys_table, None, "profiles:read")
    unknown = "Bearer ak_000000000000_nope-nope-nope-nope-nope"
    assert not authorize(keys_table, unknown, "profiles:read")
