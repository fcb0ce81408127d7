"""The console's web rules, end to end through aiohttp with fakes behind it: sign-in,
the session cookie's flags, read keys refused every change on the server, CSRF, and
every page rendering."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import Console, create_app
from console.sessions import COOKIE
from ingest.auth import KeyRecord
from streams.settings import load_settings
from tests.unit.console.fakes import (
    ADMIN_KEY,
    PEPPER,
    PID,
    READ_ID,
    READ_KEY,
    WRITE_KEY,
    fake_console,
)


@pytest.fixture
def console() -> Console:
    return fake_console()


@pytest.fixture
async def client(console: Console) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(console))) as client:
        yield client


async def sign_in(client: TestClient[Any, Any], key: str) -> Any:
    return await client.post("/login", data={"api_key": key, "next": "/profiles"},
                             allow_redirects=False)


def csrf_of(html: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', html)
    assert match, "the page carries the session's CSRF token for htmx"
    return match.group(1)


async def test_pages_need_a_session(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/live", allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"].startswith("/login?next=")
    htmx = await client.get("/deadletters", headers={"HX-Request": "true"},
                            allow_redirects=False)
    assert htmx.status == 401 and htmx.headers["HX-Redirect"].startswith("/login")


async def test_sign_in_sets_an_httponly_strict_cookie(client: TestClient[Any, Any]) -> None:
    answer = await sign_in(client, READ_KEY)
    assert answer.status == 303 and answer.headers["Location"] == "/profiles"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never return
    assert READ_KEY not in cookie  # only the opaque session id goes to the browser
    page = await client.get("/profiles")
    assert page.status == 200 and READ_KEY not in await page.text()


async def test_cookie_is_secure_when_asked_or_over_tls() -> None:
    console = fake_console(load_settings(api_key_pepper=PEPPER, console_cookie_secure="always"))
    async with TestClient(TestServer(create_app(console))) as client:
        cookie = (await sign_in(client, ADMIN_KEY)).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("key,status", [("nope", 401), (WRITE_KEY, 401)])
async def test_unknown_and_unscoped_keys_cannot_sign_in(client: TestClient[Any, Any],
                                                        key: str, status: int) -> None:
    answer = await sign_in(client, key)
    assert answer.status == status and "Set-Cookie" not in answer.headers


async def test_a_read_key_changes_nothing(client: TestClient[Any, Any],
                                          console: Console) -> None:
    await sign_in(client, READ_KEY)
    token = csrf_of(await (await client.get("/deadletters")).text())
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    for path, data in (("/deadletters/redrive", {"kind": "stream", "offset": "3"}),
                       (f"/profiles/{PID}/merges/m-1/undo", {}),
                       ("/delivery/local_receiver/enable", {})):
        answer = await client.post(path, data=data, headers=headers)
        assert answer.status == 403, path
        assert "read-only" in await answer.text()
    ops: Any = console.operations
    assert ops.redriven == [] and ops.enabled == []


async def test_an_admin_change_needs_the_csrf_token(client: TestClient[Any, Any],
                                                    console: Console) -> None:
    await sign_in(client, ADMIN_KEY)
    token = csrf_of(await (await client.get("/deadletters")).text())
    refused = await client.post("/deadletters/redrive", data={"offset": "3"})
    assert refused.status == 403 and "CSRF" in await refused.text()
    done = await client.post("/deadletters/redrive",
                             data={"kind": "stream", "offset": ["3", "5"], "csrf": token})
    assert done.status == 200 and "Re-drove 2" in await done.text()
    ops: Any = console.operations
    assert ops.redriven == [("stream", [3, 5])]
    undo = await client.post(f"/profiles/{PID}/merges/m-1/undo",
                             headers={"X-CSRF-Token": token})
    assert undo.status == 200 and "accepted" in await undo.text()


async def test_a_revoked_key_ends_its_session(client: TestClient[Any, Any],
                                              console: Console) -> None:
    await sign_in(client, READ_KEY)
    assert (await client.get("/live", allow_redirects=False)).status == 200
    record = console.keys.table.get(READ_ID)
    assert record is not None
    console.keys.table.apply(KeyRecord(record.key_id, record.key_hash, record.scopes,
                                       record.name, revoked=True), READ_ID)
    assert (await client.get("/live", allow_redirects=False)).status == 303
    assert len(console.sessions) == 0


async def test_sign_out(client: TestClient[Any, Any], console: Console) -> None:
    await sign_in(client, READ_KEY)
    answer = await client.post("/logout", allow_redirects=False)
    assert answer.status == 303 and len(console.sessions) == 0


async def test_every_page_renders(client: TestClient[Any, Any]) -> None:
    await sign_in(client, ADMIN_KEY)
    for path in ("/live", "/profiles", "/deadletters", "/deadletters?kind=delivery",
                 "/definitions", "/activity", "/delivery"):
        answer = await client.get(path)
        assert answer.status == 200, (path, await answer.text())
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"


async def test_profile_search_and_page(client: TestClient[Any, Any]) -> None:
    await sign_in(client, READ_KEY)
    found = await client.get("/profiles?kind=customer_id&q=cust_1", allow_redirects=False)
    assert found.status == 303 and found.headers["Location"] == f"/profiles/{PID}"
    missing = await client.get("/profiles?kind=customer_id&q=nobody")
    assert missing.status == 404 and "No profile has customer_id nobody" in await missing.text()
    page = await (await client.get(f"/profiles/{PID}")).text()
    assert "email withheld by rule consent: no marketing:email consent" in page
    assert "contract_ending" in page and "admin only" in page  # undo hidden for read keys


async def test_funnel_needs_admin(client: TestClient[Any, Any]) -> None:
    await sign_in(client, READ_KEY)
    assert "needs the admin scope" in await (await client.get("/activity")).text()
    await client.post("/logout")
    await sign_in(client, ADMIN_KEY)
    page = await (await client.get("/activity")).text()
    assert 'data-journey="churn_prevention"' in page


async def test_metrics_need_an_admin_key(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/metrics")).status == 401
    read = await client.get("/metrics", headers={"Authorization": f"Bearer {READ_KEY}"})
    assert read.status == 403
    admin = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert admin.status == 200 and "console_requests_total" in await admin.text()


async def test_no_open_redirect(client: TestClient[Any, Any]) -> None:
    answer = await client.post("/login", data={"api_key": READ_KEY,
                                               "next": "//evil.example/x"},
                               allow_redirects=False)
    assert answer.headers["Location"] == "/live"
