"""API keys for the worker's profile API: the gateway's key store, read-only here.

The worker follows the same compacted key topic as every gateway, so a key
created or revoked with ``scripts/apikeys`` counts here within seconds too.
Reading profiles needs ``profiles:read``; undoing a merge needs ``admin``.
Until the key topic has been read, requests are refused (fail closed).
"""

from __future__ import annotations

from typing import Any

from agents.api import set_authorizer
from ingest.auth import ADMIN, KeyTable, credential_from_header
from ingest.errors import AuthError
from ingest.keystore import KeyTopicReader
from streams.app import app, settings

# The profile API's scope names, mapped onto the key store's scopes.
SCOPES = {"profiles:read": "profiles:read", "profiles:admin": ADMIN}

key_table = KeyTable(settings.api_key_pepper.get_secret_value())
key_reader = KeyTopicReader(settings, key_table)


def authorize(table: KeyTable, header: str | None, scope: str) -> bool:
    """True if the Authorization header carries a live key with ``scope``."""
    try:
        principal = table.authenticate(credential_from_header(header))
        principal.require(SCOPES[scope])
    except AuthError:  # ForbiddenScope is an AuthError too
        return False
    return True


async def _check(request: Any, scope: str) -> bool:
    return key_reader.loaded.is_set() and authorize(
        key_table, request.headers.get("Authorization"), scope
    )


set_authorizer(_check)


async def start_key_store() -> None:
    key_reader.start()


app.task(start_key_store)  # started with the worker, after the app is configured
