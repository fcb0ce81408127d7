"""The console against the real stack: a worker, a gateway, an executor with its
receiver, and the console itself, each its own process, as ``make run`` starts them;
then Debian's chromium, driven by Playwright."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from console.screenshots import CHROMIUM, VIEWPORT, launch
from streams.activation.distribution import publish
from streams.serde import AvroSerde
from streams.settings import REPO_ROOT, Settings
from streams.topics import declared_topics
from tests.integration.core.conftest import CoreStack, core, workers  # noqa: F401
from tests.integration.core.harness import REPO, Worker, free_port, wait_for
from tests.integration.delivery.conftest import (  # noqa: F401 - fixtures used by name
    SECRET,
    ExecutorProcess,
    Receiver,
    executor_env,
    executors,
    receiver,
)


class Service:
    """A platform process started as ``make run`` starts it; stopped at the end."""

    def __init__(self, module: str, env: dict[str, str], log: Path, url: str) -> None:
        self.log, self.url = log, url
        self.proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=env,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}; log: {self.log}")
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@dataclass
class Platform:
    settings: Settings
    core: CoreStack
    worker: Worker
    gateway: str
    console: str
    receiver: Receiver


@pytest.fixture
def platform(core: CoreStack, serde: AvroSerde,  # noqa: F811
             workers: Callable[..., Worker], receiver: Receiver,  # noqa: F811
             executors: Callable[..., ExecutorProcess], tmp_path: Path  # noqa: F811
             ) -> Iterator[Platform]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    settings = core.settings.model_copy(update={
        "delivery_secrets": {"LOCAL_WEBHOOK_SECRET": SecretStr(SECRET)},
        "delivery_metrics_port": free_port(), "console_port": free_port(),
        "gateway_port": free_port()})
    for spec in declared_topics(settings):  # as streams.bootstrap registers them
        if spec.value_type is not None:
            serde.encoder(spec.value_subject, spec.value_type, register=True)
    defs = tmp_path / "defs"
    shutil.copytree(REPO_ROOT / "definitions", defs)
    local = defs / "destinations" / "local_receiver.yaml"
    local.write_text(local.read_text().replace("http://127.0.0.1:8900/hooks/activation",
                                               receiver.url("activation")))
    publish(settings, defs, "console-test")
    worker = workers(settings)
    executors(settings)
    services = [start(settings, "ingest", settings.gateway_port, tmp_path),
                start(settings, "console", settings.console_port, tmp_path, worker)]
    try:
        yield Platform(settings, CoreStack(settings, core.ingest, core.dead_letter,
                                           core.encode),
                       worker, services[0].url, services[1].url, receiver)
    finally:
        for service in services:
            service.stop()


def start(settings: Settings, module: str, port: int, tmp_path: Path,
          worker: Worker | None = None) -> Service:
    env = {**executor_env(settings), "PYTHONUNBUFFERED": "1",
           "ACTIVATION_GATEWAY_PORT": str(settings.gateway_port),
           "ACTIVATION_CONSOLE_PORT": str(settings.console_port),
           "ACTIVATION_CONSOLE_LIVE_BACKLOG": "0"}
    if worker is not None:
        env["ACTIVATION_CONSOLE_WORKER_URLS"] = json.dumps([worker.base])
    service = Service(module, env, tmp_path / f"{module}.log", f"http://127.0.0.1:{port}")
    wait_for(service.ready, 90, f"{module} ready (log: {service.log})")
    return service


@pytest.fixture
def browser() -> Iterator[Any]:
    handle, chromium = launch()
    context = chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()
        chromium.close()
        handle.stop()  # type: ignore[attr-defined]

