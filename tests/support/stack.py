"""Real Kafka and a real schema registry for integration tests, started one of two ways.

* ``docker``: testcontainers (Apache Kafka's KRaft image and Apicurio Registry),
  when a Docker engine answers: users' laptops and their CI.
* ``local``: ``scripts/stack`` with its own home and ports (``.stack-test/``),
  so a developer's ``make run`` data is never touched.
* ``external``: services already running, taken from ``ACTIVATION_*`` settings.

Either way the tests talk to real services; the session header says which.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "scripts" / "stack"
KAFKA_IMAGE = "apache/kafka:4.1.1"
REGISTRY_IMAGE = "apicurio/apicurio-registry:3.0.9"


@dataclass
class StackHandle:
    kind: str
    bootstrap: str
    registry_url: str
    _restart: Any = field(default=None, repr=False)
    _stop: Any = field(default=None, repr=False)

    def restart(self) -> None:
        """Stop both services and start them again on the same data."""
        if self._restart is None:
            raise RuntimeError(f"the {self.kind} stack cannot be restarted by the tests")
        self._restart(self)
        wait_ready(self)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop(self)


@functools.cache
def _launcher() -> Any:
    """scripts/stack as a module, to reuse its health probes."""
    loader = importlib.machinery.SourceFileLoader("stack_launcher", str(STACK))
    spec = importlib.util.spec_from_loader("stack_launcher", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stack_launcher"] = module  # dataclasses look their module up here
    loader.exec_module(module)
    return module


def wait_ready(handle: StackHandle, timeout: float = 180.0) -> None:
    """Block until the broker serves metadata and the registry lists subjects."""
    launcher = _launcher()
    port = int(handle.bootstrap.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if launcher.kafka_answers(port) and launcher.registry_answers(handle.registry_url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{handle.kind}: broker or registry not answering after {timeout:.0f}s")


def docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:  # any failure means: no engine we can use
        return False
    return True


# --- local launcher -----------------------------------------------------------------

TEST_PORTS = (29092, 29093, 28081)


def _stack(command: str, args: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, str(STACK), command, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"scripts/stack {command} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def start_local(
    home: Path = REPO / ".stack-test",
    ports: tuple[int, int, int] = TEST_PORTS,
) -> StackHandle:
    """The launcher's stack in ``home``; reused (and left running) if it already answers."""
    kafka, controller, registry = ports
    args = [
        "--home",
        str(home),
        "--kafka-port",
        str(kafka),
        "--controller-port",
        str(controller),
        "--registry-port",
        str(registry),
    ]
    already = "answering" in _stack("status", args)
    if not already:
        _stack("reset", args)
        _stack("up", args)

    def restart(_: StackHandle) -> None:
        _stack("down", args)
        _stack("up", args)

    def stop(_: StackHandle) -> None:
        if not already:
            _stack("down", args)

    return StackHandle(
        f"local (scripts/stack, {home.name}/)",
        f"127.0.0.1:{kafka}",
        f"http://127.0.0.1:{registry}/apis/ccompat/v7",
        restart,
        stop,
    )


def free_ports(count: int) -> tuple[int, ...]:
    """Ports the OS says are free now (bound then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


# --- testcontainers ----------------------------------------------------------------


def start_docker() -> StackHandle:  # pragma: no cover - needs a Docker engine
    from testcontainers.core.container import DockerContainer  # type: ignore[import-untyped]
    from testcontainers.core.network import Network  # type: ignore[import-untyped]
    from testcontainers.core.waiting_utils import wait_for_logs  # type: ignore[import-untyped]

    network = Network().create()
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_network(network)
        .with_network_aliases("kafka")
        .with_bind_ports(9092, 29092)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9093")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,INTERNAL://:19092,CONTROLLER://:9093")
        .with_env(
            "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://127.0.0.1:29092,INTERNAL://kafka:19092"
        )
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        )
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    kafka.start()
    wait_for_logs(kafka, "Kafka Server started", timeout=120)
    registry = (
        DockerContainer(REGISTRY_IMAGE)
        .with_network(network)
        .with_bind_ports(8080, 28081)
        .with_env("APICURIO_STORAGE_KIND", "kafkasql")
        .with_env("APICURIO_KAFKASQL_BOOTSTRAP_SERVERS", "kafka:19092")
    )
    registry.start()
    wait_for_logs(registry, "Installed features", timeout=180)

    def restart(_: StackHandle) -> None:
        for container in (registry, kafka):
            container.get_wrapped_container().stop()
        for container, marker in (
            (kafka, "Kafka Server started"),
            (registry, "Installed features"),
        ):
            container.get_wrapped_container().start()
            wait_for_logs(container, marker, timeout=180)

    def stop(_: StackHandle) -> None:
        registry.stop()
        kafka.stop()
        network.remove()

    # Fixed host ports keep the addresses stable across a container restart.
    return StackHandle(
        "docker (testcontainers)",
        "127.0.0.1:29092",
        "http://127.0.0.1:28081/apis/ccompat/v7",
        restart,
        stop,
    )


def start_stack(mode: str, external: tuple[str, str]) -> StackHandle:
    if mode == "external":
        return StackHandle("external (ACTIVATION_* settings)", *external)
    if mode == "docker" or (mode == "auto" and docker_available()):
        return start_docker()
    return start_local()
