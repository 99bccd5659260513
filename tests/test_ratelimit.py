"""The sliding window the client paces to and the sandboxes enforce."""

from __future__ import annotations

import asyncio
import time

import pytest

from segship.ratelimit import Pacer, RateLimit, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_window_counts_requests_and_says_when_a_slot_frees():
    clock = Clock()
    window = SlidingWindow(RateLimit(2, 3.0), clock=clock)
    assert window.try_acquire() == (True, 1, 0.0)
    clock.now += 1.0
    assert window.try_acquire() == (True, 0, 2.0)  # full: the first leaves in 2 s
    assert window.try_acquire() == (False, 0, 2.0)
    clock.now += 2.0
    assert window.try_acquire()[0]


def test_a_pacer_keeps_any_window_within_the_limit():
    limit = RateLimit(4, 0.2)
    pacer = Pacer(limit)
    sent: list[float] = []

    async def send() -> None:
        await pacer.acquire()
        sent.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(send() for _ in range(16)))

    asyncio.run(main())
    gaps = [later - earlier for earlier, later in zip(sent, sent[limit.requests:])]
    assert min(gaps) >= limit.per_seconds - 0.001  # sleeping is never early


def test_a_pacer_waits_with_the_sleep_it_is_given():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the HTTP client's ends at once when the run stops
        waits.append(seconds)
        await asyncio.sleep(seconds)

    pacer = Pacer(RateLimit(1, 0.05), sleep=sleep)

    async def main() -> None:
        pacer.hold(0.05)
        await pacer.acquire()  # after the hold
        await pacer.acquire()  # after the first leaves the window

    asyncio.run(main())
    assert len(waits) >= 2 and all(0 < seconds <= 0.05 for seconds in waits)


@pytest.mark.parametrize(("rate", "requests", "seconds"), [(10, 10, 1.0), (2.5, 2, 0.8), (0.5, 1, 2.0)])
def test_a_rate_per_second_is_whole_requests_per_window(rate, requests, seconds) -> None:
    limit = RateLimit.per_second(rate)
    assert (limit.requests, limit.per_seconds) == (requests, pytest.approx(seconds))
