"""The key CLI writes to the real key topic and a running gateway honours it."""

from __future__ import annotations

import re

import pytest

from ingest.apikeys_cli import run
from tests.integration.ingest.conftest import Running, wait_for


async def test_create_list_revoke(gateway: Running, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["create", "--name", "crm", "--scope", "events:write"], gateway.settings) == 0
    out = capsys.readouterr().out
    key = re.search(r"secret \(shown once\): (\S+)", out)
    key_id = re.search(r"key id: (\S+)", out)
    assert key and key_id

    async def status() -> int:
        answer = await gateway.client.post("/v1/events", headers=gateway.auth(key.group(1)),
                                           json={"event": "x", "customer_id": "c",
                                                 "timestamp": "2024-01-01T00:00:00Z"})
        return answer.status_code

    async def is_(code: int) -> bool:
        return await status() == code

    await wait_for(lambda: is_(200))
    assert run(["list"], gateway.settings) == 0
    listing = capsys.readouterr().out
    assert key_id.group(1) in listing and "bootstrap" in listing
    assert key.group(1) not in listing
    assert run(["revoke", key_id.group(1)], gateway.settings) == 0
    await wait_for(lambda: is_(401))
    assert run(["revoke", "nope"], gateway.settings) == 1
