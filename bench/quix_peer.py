"""The Quix Streams peer of ``bench.stream``: one counter per key, in its own virtualenv.

    .venv-bench-quix/bin/python -m bench.quix_peer --topic T --group G --state-dir D --port P

A Quix Streams application that does what ``bench.stream``'s plain Faust agent does: for
every record of the ingestion topic (key and value left as raw bytes), one per-key counter
in Quix's state (RocksDB, with its changelog topic) is incremented, and nothing else. Its
guarantees match the Faust agent's: at-least-once (offsets committed every second after
the state and changelog are flushed), producer acks from all replicas, idempotent producer.
``--guarantee exactly-once`` turns on Quix's transactional checkpoints instead.

It serves its count of processed records on ``http://127.0.0.1:PORT/metrics`` in the
same form as the Faust agent (``activation_stream_events_total{stage="quix"}``), so
``bench.stream`` measures it the same way; the Kafka connection (librdkafka properties)
comes as JSON in ``BENCH_QUIX_KAFKA_CONFIG``.

Quix Streams caps confluent-kafka (3.28.1: ``<2.13``) and pydantic below the versions the
platform runs on, so it is not installed into ``.venv``: ``ensure_venv`` (called by
``bench.stream`` in the main venv; standard library only) creates ``.venv-bench-quix`` on
first use and installs the ``bench-quix`` extra's requirements from pyproject.toml into it
(``DEFAULT_REQUIREMENTS`` while that extra is absent), again whenever they change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-bench-quix"
EXTRA = "bench-quix"
DEFAULT_REQUIREMENTS = ["quixstreams==3.28.1"]
KAFKA_CONFIG_ENV = "BENCH_QUIX_KAFKA_CONFIG"


# --- the side virtualenv (runs in the main venv) -------------------------------------------

def requirements() -> list[str]:
    """The ``bench-quix`` extra of pyproject.toml, or the default pin while it is absent."""
    with (REPO / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f).get("project", {})
    extra = project.get("optional-dependencies", {}).get(EXTRA)
    return [str(r) for r in extra] if extra else list(DEFAULT_REQUIREMENTS)


def ensure_venv() -> Path:
    """The side venv's interpreter: created, and its requirements installed, if needed."""
    python, marker = VENV / "bin" / "python", VENV / ".installed"
    wanted = "\n".join(requirements())
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        print(f"creating {VENV} for the Quix Streams peer", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
                   check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted.split("\n")],
                   check=True)
    marker.write_text(wanted)
    return python


# --- the peer itself (runs in the side venv) -----------------------------------------------

def _serve_metrics(port: int, lines: Callable[[], str]) -> None:
    """/metrics on 127.0.0.1:port from a daemon thread; ``lines()`` gives the body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = lines().encode() if self.path == "/metrics" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topic", required=True, help="the ingestion topic to count")
    parser.add_argument("--group", required=True, help="consumer group (and state name)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int, help="/metrics port")
    parser.add_argument("--guarantee", default="at-least-once",
                        choices=["at-least-once", "exactly-once"])
    parser.add_argument("--commit-interval", type=float, default=1.0,
                        help="seconds between checkpoints (Faust agent: 1.0)")
    args = parser.parse_args()

    from importlib.metadata import version

    from quixstreams import Application, State
    from quixstreams.kafka.configuration import ConnectionConfig

    conf = json.loads(os.environ.get(KAFKA_CONFIG_ENV) or "{}")
    seen = [0]
    info = (f'bench_peer_info{{engine="quixstreams",version="{version("quixstreams")}",'
            f'guarantee="{args.guarantee}"}} 1\n')
    _serve_metrics(args.port, lambda: info + 'activation_stream_events_total'
                   f'{{outcome="applied",stage="quix"}} {seen[0]}\n')

    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(conf),
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        # As the Faust agent's producer (changelog writes): acks=-1, idempotent.
        producer_extra_config={"acks": "all", "enable.idempotence": True},
        loglevel="INFO",
    )
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")

    def count(value: Any, key: Any, timestamp: int, headers: Any, state: State) -> None:
        # Quix's state is scoped to the record's key: one counter per key.
        state.set("count", state.get("count", 0) + 1)
        seen[0] += 1

    app.dataframe(topic).update(count, stateful=True, metadata=True)
    app.run()


if __name__ == "__main__":
    main()
