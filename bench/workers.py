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


def handled(text: str) -> float:
    """Records handled by any stage so far (the screening stage comes first)."""
    return sum(counters(text, "activation_stream_events_total").values())


def started(text: str) -> bool:
    """Whether any stage has handled a record yet."""
    return handled(text) > 0


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


class _Watch:
    """A started worker, read from outside: its /metrics and its CPU time."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.deadline = time.monotonic() + WORKER_DEADLINE_S

    def read(self) -> str:
        """The next answer of /metrics (after 0.1 s); stops the run if the worker died."""
        while time.monotonic() < self.deadline and self.proc.poll() is None:
            text = _scrape(self.port)
            if text:
                return text
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"worker stopped or timed out; log:\n{tail}")

    def feed(self, feed: Callable[[], None], events: int, measured: bool) -> Run | None:
        """Run ``feed`` in a thread while reading every 0.1 s until ``events`` more are
        done; the window over them if ``measured``."""
        text = self.read()
        done, seen = processed(text), handled(text)  # what earlier phases did
        feeder = threading.Thread(target=feed, name="feed", daemon=True)
        feeder.start()
        readings: list[Reading] = []
        try:
            while True:
                n = processed(text) - done
                readings.append((time.monotonic(), n, handled(text) > seen,
                                 _cpu_seconds(self.proc.pid)))
                if n >= events:
                    return _window(readings, events, text) if measured else None
                time.sleep(0.1)
                text = self.read()
        finally:
            feeder.join(60)


def run_worker(cmd: list[str], env: dict[str, str], port: int, expected: int,
               log_path: Path, feed: Callable[[], None],
               warm: tuple[int, Callable[[], None]] | None = None) -> Run:
    """Start a worker; once its /metrics answers, ``feed`` writes its input (in a thread,
    the readings going on meanwhile); its events/s and CPU per event while it processes
    those ``expected`` events, and its metrics.

    Fed only once it answers: a worker started on a backlog began some stages (the
    screening thread) before its /metrics answered, and a window opening at the first
    answer missed their work: all 20,000 events were screened by then in every run
    logged (the core's figures left out the screening stage's CPU).

    ``warm``: (events, their feed) written and processed first, outside the window: the
    measured events then come from customers the worker has seen."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        watch = _Watch(proc, port, log_path)
        if warm is not None:
            watch.feed(warm[1], warm[0], measured=False)
        run = watch.feed(feed, expected, measured=True)
        assert run is not None  # noqa: S101 - measured
        return run
    finally:
        proc.terminate()
        proc.wait(60)
