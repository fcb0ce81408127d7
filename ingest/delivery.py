"""Getting delivery reports from the producer's polling thread to the event loop, cheaply.

Made for the single-event path, where every request waits for its own
acknowledgement: :class:`Wakeups` turns the reports of one ``poll()`` into one
``call_soon_threadsafe`` (one self-pipe write and one loop wake-up, not one per
event), and :class:`Deadlines` enforces the backstop deadline (of single events
and of whole batches) with one sweep a second instead of a timer, plus
``wait_for``'s two extra futures, per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from ingest.errors import Unavailable

RETRY_AFTER = 2.0
SWEEP_EVERY = 1.0
Report = tuple["asyncio.Future[None]", "KafkaError | None"]


def late() -> Unavailable:
    return Unavailable("Kafka did not acknowledge in time", RETRY_AFTER)


class Wakeups:
    """Delivery reports gathered on whichever thread polls, handed over in one go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: list[Report] = []

    def reporter(self, future: asyncio.Future[None]) -> Callable[[KafkaError | None, Any], None]:
        """The ``on_delivery`` callback of one message: remembers its outcome for flush()."""
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            with self._lock:
                self._reports.append((future, err))

        return on_delivery

    def flush(self) -> None:
        """Settle everything gathered so far: one wake-up per event loop (in practice one)."""
        with self._lock:
            reports, self._reports = self._reports, []
        if not reports:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[Report]] = {}
        for report in reports:
            by_loop.setdefault(report[0].get_loop(), []).append(report)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, items)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more


def _settle_all(reports: list[Report]) -> None:
    for future, err in reports:
        if future.done():  # expired by the backstop, or its request was cancelled
            continue
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(Unavailable(f"Kafka did not persist the event: {err.str()}",
                                             RETRY_AFTER))


class Deadlines:
    """Fails futures still pending ``timeout`` seconds after they were watched.

    Every future gets the same timeout, so watch order is deadline order: a sweep
    pops from the left until it meets one that is neither settled nor due. Only
    the event loop's thread touches the queue (watch and sweep both run there).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._queues: dict[asyncio.AbstractEventLoop, deque[tuple[float, asyncio.Future[None]]]]
        self._queues = {}

    def watch(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = deque()
        if not queue:
            loop.call_later(SWEEP_EVERY, self._sweep, loop)
        queue.append((loop.time() + self._timeout, future))

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._queues[loop]
        now = loop.time()
        while queue and (queue[0][1].done() or queue[0][0] <= now):
            _, future = queue.popleft()
            if not future.done():
                future.set_exception(late())
        if queue:
            loop.call_later(SWEEP_EVERY, self._sweep, loop)
        else:
            del self._queues[loop]  # a closed loop is not kept alive by a stale entry
