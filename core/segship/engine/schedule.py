"""Cron scheduling: run each export when its schedule comes due, one run at a time.

The rules `segship schedule` keeps:

- Runs go one after the other, in the order they came due, so two runs of one export
  never overlap in this process (the state lock refuses one started elsewhere).
- A tick that passes while a run is going is not lost and not repeated: the export runs
  once when the run ends, however many of its ticks passed (coalesced, as cron's
  successors do). This holds for the export that was running too: its data may have
  changed after its run started.
- A run that fails, or crashes, is reported and the scheduler goes on to the next tick.
- ``stop`` (Ctrl-C or SIGTERM) ends the wait at once, or ends the run in progress after
  its batches in flight; no other run starts.
- ``watch``, when given, is called between runs: before each wait, at least every
  ``WATCH_SECONDS`` while waiting, and after the runs of ``once`` (`segship schedule` checks
  whether an export is stale there). A watch that fails is logged; the scheduler goes on.

Time is read and waited through a :class:`Clock`, so tests drive it without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import structlog
from croniter import croniter

log = structlog.get_logger("segship.schedule")

RunDue = Callable[[list[str]], Awaitable[int]]
#: called with the clock's time between runs
Watch = Callable[[datetime], Awaitable[None]]
#: The longest the scheduler waits without calling its watch.
WATCH_SECONDS = 60


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (cron expressions are read in its timezone)."""

    async def wait(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait ``seconds``, or less if ``stop`` is set meanwhile."""


class SystemClock:
    """The machine's local time and asyncio's timers."""

    def now(self) -> datetime:
        return datetime.now().astimezone()

    async def wait(self, seconds: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass


def next_run(expression: str, after: datetime) -> datetime:
    return croniter(expression, after).get_next(datetime)


def due_now(schedules: dict[str, str], now: datetime) -> list[str]:
    """The exports whose schedule matches the current minute."""
    minute = now.replace(second=0, microsecond=0)
    return [name for name, expression in schedules.items() if croniter.match(expression, minute)]


async def run_schedule(schedules: dict[str, str], run_due: RunDue, stop: asyncio.Event, *, once: bool = False,
                       clock: Clock | None = None, watch: Watch | None = None) -> int:
    """Wait for the next due time, run the due exports (``run_due([name])`` each), repeat until ``stop``.

    ``once`` runs the exports due in the current minute together and returns their exit
    code. Otherwise the exit code is that of the run a stop interrupted, or 0 if the stop
    came while waiting.
    """
    clock = clock or SystemClock()
    if once:
        due = due_now(schedules, clock.now())
        code = await run_due(due) if due else 0
        await _watched(watch, clock.now())
        return code
    upcoming = {name: next_run(expression, clock.now()) for name, expression in schedules.items()}
    while not stop.is_set():
        when = min(upcoming.values())
        log.info("schedule.waiting", next=when.isoformat(), exports=[n for n, t in upcoming.items() if t == when])
        await _wait_until(clock, when, stop, watch)
        now = clock.now()
        for name in sorted((n for n, t in upcoming.items() if t <= now), key=lambda n: (upcoming[n], n)):
            if stop.is_set():
                break
            started = clock.now()
            code = await _run_one(run_due, name)
            if stop.is_set():
                return code
            # the tick after the run's start: in the past if one passed during the run, so it runs
            # once more now; several passed ticks are one
            upcoming[name] = next_run(schedules[name], started)
    return 0


async def _wait_until(clock: Clock, when: datetime, stop: asyncio.Event, watch: Watch | None) -> None:
    """Wait until ``when`` or a stop; with a watch, call it first and at least every WATCH_SECONDS."""
    if watch is None:
        await clock.wait((when - clock.now()).total_seconds(), stop)
        return
    while not stop.is_set():
        await _watched(watch, clock.now())
        remaining = (when - clock.now()).total_seconds()
        if remaining <= 0:
            return
        await clock.wait(min(remaining, WATCH_SECONDS), stop)


async def _watched(watch: Watch | None, now: datetime) -> None:
    if watch is None:
        return
    try:
        await watch(now)
    except Exception as exc:  # noqa: BLE001 - the next tick must still run
        log.error("schedule.watch_failed", error=f"{type(exc).__name__}: {exc}")


async def _run_one(run_due: RunDue, name: str) -> int:
    """Run one export; a crash is logged and counted as a failed run, never ends the scheduler."""
    try:
        return await run_due([name])
    except Exception as exc:  # noqa: BLE001 - the next tick must still run
        log.error("schedule.run_crashed", export=name, error=f"{type(exc).__name__}: {exc}")
        return 1
