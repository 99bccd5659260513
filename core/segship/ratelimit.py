"""A sliding-window request limit, shared by the HTTP client (to pace) and the sandboxes (to enforce)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` in any window of ``per_seconds``."""

    requests: int
    per_seconds: float

    @classmethod
    def per_second(cls, rate: float) -> RateLimit:
        """A rate in requests per second (``0.5``, ``2.5``) as a whole number of requests per window."""
        requests = max(1, round(rate))
        return cls(requests, requests / rate)

    def scaled(self, fraction: float) -> RateLimit:
        """The same window with a fraction of the requests (a safety margin for clock skew)."""
        return RateLimit(max(1, int(self.requests * fraction)), self.per_seconds)


class SlidingWindow:
    """Counts requests in the last ``per_seconds``; exact, not bucketed, like Braze's limiter."""

    def __init__(self, limit: RateLimit, clock=time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        horizon = now - self.limit.per_seconds
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()

    def try_acquire(self) -> tuple[bool, int, float]:
        """Count a request if the window has room: (allowed, remaining, seconds until a slot frees)."""
        now = self._clock()
        self._expire(now)
        if len(self._times) < self.limit.requests:
            self._times.append(now)
            wait = 0.0
            allowed = True
        else:
            allowed = False
            wait = self._times[0] + self.limit.per_seconds - now
        remaining = self.limit.requests - len(self._times)
        if allowed and remaining == 0:
            wait = self._times[0] + self.limit.per_seconds - now
        return allowed, remaining, wait


class Pacer:
    """Awaits a free slot in a sliding window; ``hold`` pauses everyone (a 429's reset time).

    ``sleep`` is how it waits: the HTTP client's ends at once when the run is told to stop."""

    def __init__(self, limit: RateLimit, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.window = SlidingWindow(limit)
        self._sleep = sleep
        self._held_until = 0.0
        self._queue: asyncio.Lock | None = None  # made in the running loop

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the destination asked us to wait)."""
        self._held_until = max(self._held_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        if self._queue is None:
            self._queue = asyncio.Lock()
        # Requests wait in line (the lock is FIFO) and only the first sleeps until a slot frees:
        # otherwise every waiter wakes up for every slot (hundreds of wake-ups per request at
        # Braze's 1,000 requests a second). Uncontended, the lock costs no await.
        async with self._queue:
            while True:
                held = self._held_until - time.monotonic()
                if held > 0:
                    await self._sleep(held)
                    continue
                allowed, _remaining, wait = self.window.try_acquire()
                if allowed:
                    return
                await self._sleep(wait)
