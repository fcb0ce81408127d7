"""One lane per destination: its own HTTP connection pool, concurrency, rate limit and
circuit breaker, so a failing or slow destination never slows the others (the
complaint rudder-server#4953 records about a shared router).

A lane takes jobs from its own queue with ``concurrency`` workers; each waits for the
rate limiter (``aiolimiter``), asks the breaker, signs and sends the request, and hands
the :class:`~streams.delivery.attempt.Answer` to ``on_answer``. Nothing here waits on
another destination, and the executor's consumer never waits on a lane.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
from aiolimiter import AsyncLimiter

from streams.delivery.attempt import Answer, Job
from streams.delivery.breaker import Breaker
from streams.delivery.destinations import ERASE_PROFILE, Destination
from streams.delivery.policy import retry_after
from streams.delivery.signing import body, headers, signers

log = logging.getLogger(__name__)
OnAnswer = Callable[[Job, Answer, datetime], None]
HALF_OPEN_WAIT_S = 1.0  # a request refused while the breaker's probe is out waits this


class Lane:
    def __init__(self, destination: Destination, secrets: Mapping[str, str],
                 breaker: Breaker, on_answer: OnAnswer,
                 is_current: Callable[[Job], bool] = lambda _: True) -> None:
        self.destination = destination
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.breaker = breaker
        self._on_answer = on_answer
        self._is_current = is_current
        self._signing = signers([secrets[n] for n in destination.signing_secrets])
        # Rendered once: a pydantic URL renders its string anew on every str().
        self._url = str(destination.url)
        self._deletion_url = (None if destination.deletion_url is None
                              else str(destination.deletion_url))
        auth = destination.auth
        self._auth = {} if auth is None else {auth.header: (
            f"{auth.scheme} {secrets[auth.secret]}" if auth.scheme else secrets[auth.secret])}
        self._limiter = (None if destination.rate_limit is None
                         else AsyncLimiter(destination.rate_limit, 1.0))
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.in_flight = 0  # requests under way
        self.busy = 0  # jobs taken from the queue and not yet answered
        self._retiring: asyncio.Task[None] | None = None

    def start(self) -> None:
        # Its own connector: a destination that hangs holds only its own sockets.
        connector = aiohttp.TCPConnector(limit=self.destination.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.destination.timeout.total_seconds())
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._workers = [asyncio.create_task(self._work(), name=f"lane-{self.destination.id}")
                         for _ in range(self.destination.concurrency)]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def hand_over(self, successor: Lane) -> None:
        """The destination's definition changed: queued jobs move to the new lane, and
        this one ends once its requests under way have answered."""
        while not self.queue.empty():
            successor.queue.put_nowait(self.queue.get_nowait())
        self._retiring = asyncio.create_task(self._close_when_idle())

    async def _close_when_idle(self) -> None:
        while self.busy or not self.queue.empty():
            await asyncio.sleep(0.1)
        await self.close()

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            if not self._is_current(job):  # its partition was revoked: not ours to send
                continue
            self.busy += 1
            try:
                answer = await self._attempt(job)
                self._on_answer(job, answer, datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the lane; the job stays unsettled
                log.exception("delivery to %s failed unexpectedly", self.destination.id)
            finally:
                self.busy -= 1

    async def _attempt(self, job: Job) -> Answer:
        now = time.monotonic()
        if not self.breaker.allow(now):
            # While the probe is out, the others wait a cooldown, spread out, not a second.
            wait = (self.breaker.cooldown_s * random.uniform(0.5, 1.0)  # noqa: S311
                    if self.breaker.probing
                    else max(self.breaker.reopens_at(now) - now, HALF_OPEN_WAIT_S))
            return Answer(None, "circuit open", attempted=False,
                          retry_after=timedelta(seconds=wait))
        if self._limiter is not None:
            await self._limiter.acquire()
        answer = await self.send(job)
        if answer.status is not None and answer.status < 500 and answer.status != 429:
            self.breaker.succeeded()  # it answers, even if it refuses this one
        else:
            self.breaker.failed(time.monotonic())
        return answer

    def _url_for(self, job: Job) -> str:
        """:meth:`Destination.url_for`, its strings kept: erasures go to the deletion URL."""
        if self._deletion_url is not None and job.command["action_type"] == ERASE_PROFILE:
            return self._deletion_url
        return self._url

    async def send(self, job: Job) -> Answer:
        assert self._session is not None  # noqa: S101 - start() ran
        payload = job.body if job.body is not None else body(job.command)
        sent = datetime.now(UTC)
        hdrs = headers(job.command["action_id"], payload, self._signing, sent, self._auth)
        started = time.monotonic()
        self.in_flight += 1
        try:
            async with self._session.request(self.destination.method, self._url_for(job),
                                             data=payload,
                                             headers=hdrs, allow_redirects=False) as resp:
                text = (await resp.content.read(4096)).decode("utf-8", "replace")
                return Answer(resp.status, None, text,
                              retry_after(resp.headers.get("Retry-After"), sent),
                              time.monotonic() - started)
        except TimeoutError:
            return Answer(None, "timeout", elapsed_s=time.monotonic() - started)
        except aiohttp.ClientError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}"[:300],
                          elapsed_s=time.monotonic() - started)
        finally:
            self.in_flight -= 1

