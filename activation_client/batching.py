"""Background batching for the blocking client: a thread sends what ``enqueue`` collects.

Events are flushed when ``batch_size`` are waiting, every ``flush_interval``
seconds, on ``flush()``, on ``close()`` and at interpreter exit, so a script
that forgets to close its client still delivers what it queued. Queued events
already carry their ``event_id`` (the client assigns it in ``enqueue``), so a
retried batch, or one resent from ``failed``, cannot create duplicates.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from activation_client.errors import ClientError
from activation_client.events import Event, chunks

log = logging.getLogger("activation_client")
_FLUSH = object()
_STOP = object()


class ThreadBatcher:
    def __init__(self, send: Callable[[list[Event]], Any], batch_size: int = 100,
                 flush_interval: float = 1.0) -> None:
        self._send = send
        self._batch_size = batch_size
        self._interval = flush_interval
        self._queue: queue.Queue[Any] = queue.Queue()
        self.failed: list[tuple[list[Event], ClientError]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="activation-batcher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, event: Event) -> None:
        if self._closed:
            raise ClientError("the client is closed")
        self._queue.put(event)

    def flush(self, timeout: float = 60.0) -> None:
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        done.wait(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        atexit.unregister(self.close)

    def _run(self) -> None:
        pending: list[Event] = []
        while True:
            try:
                item = self._queue.get(timeout=self._interval)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._deliver(pending)
                return
            if isinstance(item, tuple) and item and item[0] is _FLUSH:
                self._deliver(pending)
                pending = []
                item[1].set()
                continue
            if item is not None:
                pending.append(item)
            if item is None or len(pending) >= self._batch_size:
                self._deliver(pending)
                pending = []

    def _deliver(self, events: list[Event]) -> None:
        for batch in chunks(events, self._batch_size):
            try:
                self._send(batch)
            except ClientError as exc:
                log.error("dropping a batch of %d events: %s", len(batch), exc)
                self.failed.append((batch, exc))
