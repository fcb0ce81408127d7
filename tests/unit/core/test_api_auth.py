"""The worker's web gate: the gateway's key store and scopes, before every route but the
probes, failing closed."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agents.auth import KeyCheck, WebGate, authorize, scope_for
from agents.worker import build
from ingest.auth import ADMIN, KeyRecord, KeyTable, hash_key, new_key
from streams.app import ActivationApp, create_app
from streams.settings import load_settings

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


# --- the web gate: every route of the worker's web server but the probes -------------------

Keys = tuple[KeyTable, dict[str, str]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "/healthz", None), ("GET", "/readyz", None), ("POST", "/readyz", None),
    ("GET", "/v1/profiles", "profiles:read"), ("HEAD", "/v1/profiles/p1/timeline",
                                               "profiles:read"),
    ("POST", "/v1/profiles/p1/merges/e1/undo", "profiles:admin"),
    ("POST", "/v1/profiles/p1/decide", "profiles:read"),  # a question: no side effect
    ("POST", "/v1/profiles/p1/x/decide", "profiles:admin"), ("PUT", "/v1/profiles/p1/decide",
                                                             "profiles:admin"),
    ("GET", "/metrics", "profiles:admin"), ("GET", "/", "profiles:admin"),
    ("GET", "/table/", "profiles:admin"), ("GET", "/v1/profilesX", "profiles:admin"),
    ("GET", "/healthz/", "profiles:admin"), ("GET", "/nowhere", "profiles:admin"),
])
def test_scope_of_each_route(method: str, path: str, scope: str | None) -> None:
    assert scope_for(method, path) == scope


def test_no_key_check_installed_refuses_everything_but_the_probes() -> None:
    gate = WebGate()
    refused = gate.refusal("GET", "/v1/profiles", "Bearer anything")
    assert refused is not None and refused.status == 503
    assert gate.refusal("GET", "/healthz", None) is None and not gate.ready()


def test_key_store_still_loading_refuses(table: Keys) -> None:
    reader: Any = SimpleNamespace(loaded=threading.Event())
    gate = WebGate()
    gate.install(KeyCheck(table[0], reader))
    refused = gate.refusal("GET", "/v1/profiles", f"Bearer {table[1]['admin']}")
    assert refused is not None and refused.status == 503 and not gate.ready()
    reader.loaded.set()
    assert gate.refusal("GET", "/v1/profiles", f"Bearer {table[1]['admin']}") is None


def gate_with(table: Keys) -> WebGate:
    gate = WebGate()
    gate.install(KeyCheck(table[0]))
    return gate


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("Bearer ak_000000000000_nope-nope-nope-nope-nope", 401), ("Token x", 401),
    ("writer", 403), ("reader", None), ("admin", None),
])
def test_profile_reads(table: Keys, header: str | None, status: int | None) -> None:
    if header in table[1]:
        header = f"Bearer {table[1][header]}"
    refused = gate_with(table).refusal("GET", "/v1/profiles/p1", header)
    assert (refused and refused.status) == status


@pytest.mark.parametrize("path", ["/metrics", "/", "/router/", "/nowhere"])
def test_admin_routes_need_the_admin_scope(table: Keys, path: str) -> None:
    gate = gate_with(table)
    missing = gate.refusal("GET", path, None)
    assert missing is not None and missing.status == 401
    reader = gate.refusal("GET", path, f"Bearer {table[1]['reader']}")
    assert reader is not None and reader.status == 403
    assert gate.refusal("GET", path, f"Bearer {table[1]['admin']}") is None


# --- over HTTP: a worker app as create_app makes it, Faust's own pages switched on -----------

FAUST_PAGES = ("APP_WEB_STATS_ENABLED", "APP_WEB_GRAPH_ENABLED", "APP_WEB_TABLES_ENABLED",
               "APP_WEB_ROUTER_ENABLED", "APP_WEB_METRICS_ENABLED")


def worker_app(tmp_path: Path, keys: KeyCheck) -> ActivationApp:
    settings = load_settings().model_copy(update={"data_dir": tmp_path, "app_id": "gate"})
    app = create_app(settings, keys)
    app.web.init_server()  # mounts Faust's blueprints, as the worker does
    return app


async def test_faust_pages_are_off_by_default(tmp_path: Path, table: Keys) -> None:
    app = worker_app(tmp_path, KeyCheck(table[0]))
    paths = {r.resource.canonical for r in app.web.web_app.router.routes()
             if r.resource is not None}
    assert paths == {"/", "/healthz", "/readyz"}  # / is Faust's index: no switch for it
    async with TestClient(TestServer(app.web.web_app)) as client:
        assert (await client.get("/")).status == 401
        assert (await client.get("/", headers=bearer(table[1]["admin"]))).status == 200


async def test_faust_pages_turned_on_by_environment_still_need_a_key(
        tmp_path: Path, table: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in FAUST_PAGES:
        monkeypatch.setenv(variable, "true")  # Faust lets these override the app's settings
    app = worker_app(tmp_path, KeyCheck(table[0]))
    async with TestClient(TestServer(app.web.web_app)) as client:
        for path in ("/", "/assignment/", "/graph/", "/table/", "/router/", "/performance/"):
            assert (await client.get(path)).status == 401, path
            refused = await client.get(path, headers=bearer(table[1]["reader"]))
            assert refused.status == 403, path
        assert (await client.get("/router/", headers=bearer(table[1]["admin"]))).status == 200


async def test_probes_are_open(tmp_path: Path, table: Keys) -> None:
    reader: Any = SimpleNamespace(loaded=threading.Event())
    app = worker_app(tmp_path, KeyCheck(table[0], reader))
    async with TestClient(TestServer(app.web.web_app)) as client:
        assert (await client.get("/healthz")).status == 200
        waiting = await client.get("/readyz")
        assert waiting.status == 503 and waiting.headers["Retry-After"]
        reader.loaded.set()
        assert (await client.get("/readyz")).status == 200


# --- the worker's own app: the profile API and /metrics of agents/api.py ---------------------

async def test_worker_routes(tmp_path: Path, table: Keys) -> None:
    """The worker as agents/worker.py builds it: every stage installed, nothing imported
    for its side effects. One test: an aiohttp application serves one event loop only."""
    settings = load_settings().model_copy(update={"data_dir": tmp_path, "app_id": "routes"})
    app = build(settings)
    assert isinstance(app.gate.keys, KeyCheck)  # create_app installed the key topic's check
    app.web.init_server()
    async with TestClient(TestServer(app.web.web_app)) as client:
        await _check_worker_routes(client, app, table)


async def _check_worker_routes(client: TestClient[Any, Any], app: ActivationApp,
                               table: Keys) -> None:
    keys = table[1]
    app.gate.keys = None  # no key check: refused, whatever the key
    assert (await client.get("/v1/profiles?customer_id=c1", headers=bearer("x"))).status == 503
    app.gate.install(KeyCheck(table[0]))
    assert (await client.get("/healthz")).status == 200
    for path in ("/metrics", "/v1/profiles?customer_id=c1", "/v1/profiles/p1/timeline", "/"):
        response = await client.get(path)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "unauthorized"
    assert (await client.get("/metrics", headers=bearer(keys["reader"]))).status == 403
    metrics = await client.get("/metrics", headers=bearer(keys["admin"]))
    assert metrics.status == 200 and "activation_" in await metrics.text()
    assert (await client.get("/v1/profiles", headers=bearer(keys["writer"]))).status == 403
    # Past the gate: the view answers (no identifier given).
    assert (await client.get("/v1/profiles", headers=bearer(keys["reader"]))).status == 400
    decide = "/v1/profiles/p1/decide"
    assert (await client.post(decide, json={}, headers=bearer(keys["writer"]))).status == 403
    asked = await client.post(decide, json={}, headers=bearer(keys["reader"]))
    assert asked.status == 400  # past the gate: the view says what the question lacks
    assert (await asked.json())["error"]["code"] == "invalid_question"
    undo = "/v1/profiles/p1/merges/e1/undo"
    assert (await client.post(undo, headers=bearer(keys["reader"]))).status == 403
    assert (await client.post(undo)).status == 401
