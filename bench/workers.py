"""Running one benchmark worker and measuring it from outside: its events/s and CPU per
event, read from its /metrics and /proc while it works (bench/stream.py's runs)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.core.harness import AUTH

REPO = Path(__file__).resolve().parent.parent
WORKER_DEADLINE_S = 1800
_LABELS = re.compile(r'(\w+)="([^"]*)"')


# --- reading a worker's /metrics ---------------------------------------------------------

def _scrape(port: int) -> str:
    try:
        # An admin key, as every worker endpoint but the probes (the bootstrap key).
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=AUTH, timeout=2)
        return response.text if response.status_code == 200 else ""
    except httpx.HTTPError:
        return ""


def counters(text: str, name: str, label: str | None = None) -> dict[str, float]:
    """Sums of the samples of counter ``name`` by the value of ``label`` ("" if None)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        labels = dict(_LABELS.findall(line.partition("}")[0]))
        key = labels.get(label, "") if label else ""
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def processed(text: str) -> float:
    """Events done with, whatever the outcome: applied by the profile stage (or counted
    by the plain agent), or stopped by the identity stage (duplicates, replays)."""
    name, total = "activation_stream_events_total", 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels = dict(_LABELS.findall(line.partition("}")[0]))
        stage, outcome = labels.get("stage"), labels.get("outcome")
        if stage in ("stream.profile", "plain", "quix") or (
                stage == "stream.identity" and outcome != "applied"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def started(text: str) -> bool:
    """Whether any stage has handled a record yet (the screening stage comes first)."""
    return any(counters(text, "activation_stream_events_total").values())


@dataclass(frozen=True)
class Run:
    rate: float  # events/s
    cpu_us: float  # the worker process's CPU-us per event (all its threads)
    text: str  # its last /metrics
    seconds: float  # the measured window


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Reading = tuple[float, float, bool, float]  # (time, processed, started, CPU seconds)
# A start-up that kept /metrics from answering for longer than this leaves the start of
# the work unknown: the window then opens at the first reading with work started.
_GAP_S = 0.5


def _window(readings: list[Reading], expected: int, text: str) -> Run:
    """All ``expected`` events over the window from the last reading before any stage
    started (the screening stage comes first) to the first with every event done.

    Each end overshoots by at most one reading interval (0.1 s plus the scrape) of idle
    time. Narrower windows go wrong on a worker that starts with a backlog: its stages
    take the backlog in turn (all of it screened, then most of it resolved, then
    applied), so the first event applied comes late and the last ones come in bursts;
    a window from the first applied event to the reading before the last missed the
    screening stage's work and the last burst, and swung by 3x between runs.
    """
    first_started = next((i for i, r in enumerate(readings) if r[2]), None)
    if first_started is None:
        raise SystemExit("no reading of /metrics saw work start: raise --events")
    begin = readings[first_started]
    if first_started > 0 and begin[0] - readings[first_started - 1][0] <= _GAP_S:
        begin = readings[first_started - 1]
    last = readings[-1]
    seconds = last[0] - begin[0]
    if seconds <= 0:
        raise SystemExit(f"too fast to measure ({len(readings)} readings of /metrics): "
                         "raise --events")
    return Run(expected / seconds, (last[3] - begin[3]) * 1e6 / expected, text, seconds)


def run_worker(cmd: list[str], env: dict[str, str], port: int, expected: int,
               log_path: Path, feed: Callable[[], None]) -> Run:
    """Start a worker; once its /metrics answers, ``feed`` writes its input (in a thread,
    the readings going on meanwhile); its events/s and CPU per event while it processes,
    its metrics.

    Fed only once it answers: a worker started on a backlog began some stages (the
    screening thread) before its /metrics answered, and a window opening at the first
    answer missed their work: all 20,000 events were screened by then in every run
    logged (the core's figures left out the screening stage's CPU)."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    feeder: threading.Thread | None = None
    try:
        deadline = time.monotonic() + WORKER_DEADLINE_S
        readings: list[Reading] = []
        last_n = 0.0
        while time.monotonic() < deadline and proc.poll() is None:
            text = _scrape(port)
            n = processed(text)
            if text:  # answered (a worker starting up may not yet)
                readings.append((time.monotonic(), n, started(text), _cpu_seconds(proc.pid)))
                if feeder is None:
                    feeder = threading.Thread(target=feed, name="feed", daemon=True)
                    feeder.start()
            if n >= expected:
                return _window(readings, expected, text)
            last_n = n
            time.sleep(0.1)
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"worker stopped or timed out at {last_n:.0f} events; log:\n{tail}")
    finally:
        proc.terminate()
        proc.wait(60)
        if feeder is not None:
            feeder.join(60)
