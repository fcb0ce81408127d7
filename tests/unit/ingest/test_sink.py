"""A batch's delivery reports: collected on the polling thread, one wake-up at the end."""

from __future__ import annotations

import asyncio
import threading

from ingest.errors import Unavailable
from ingest.sink import _Batch


async def test_done_once_every_report_is_in_even_from_another_thread() -> None:
    batch = _Batch(asyncio.get_running_loop(), 3)
    batch.report(1, Unavailable("queue full", 2.0))  # refused before it was produced
    poller = threading.Thread(target=lambda: [batch.report(i, None) for i in (0, 2, 0)])
    poller.start()
    await asyncio.wait_for(batch.done, 5)
    poller.join()
    outcomes = batch.outcomes()
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Unavailable)


async def test_reports_still_missing_become_timeouts() -> None:
    batch = _Batch(asyncio.get_running_loop(), 2)
    batch.report(0, None)
    assert not batch.done.done()
    missing = batch.outcomes()[1]
    assert isinstance(missing, Unavailable) and "in time" in str(missing)


async def test_an_empty_batch_is_done_at_once() -> None:
    assert _Batch(asyncio.get_running_loop(), 0).done.done()

