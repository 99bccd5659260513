"""Cron scheduling: run each export when its schedule comes due, one run at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from croniter import croniter

log = structlog.get_logger("segship.schedule")


def next_runs(schedules: dict[str, str], after: datetime) -> dict[str, datetime]:
    return {name: croniter(expression, after).get_next(datetime) for name, expression in schedules.items()}


async def run_schedule(schedules: dict[str, str], run_due: Callable[[list[str]], Awaitable[int]],
                       stop: asyncio.Event, *, once: bool = False) -> int:
    """Wait for the next due time, run the due exports, repeat until ``stop`` is set.

    ``once`` runs the exports due in the current minute and returns their exit code.
    Otherwise the exit code is that of the run a stop interrupted, or 0 if it came while
    waiting. Runs that come due while another run is going start when it ends (never
    skipped silently, never two at once; the state lock enforces that too).
    """
    now = datetime.now().astimezone()
    if once:
        minute = now.replace(second=0, microsecond=0)
        due = [name for name, expression in schedules.items() if croniter.match(expression, minute)]
        return await run_due(due) if due else 0
    upcoming = next_runs(schedules, now)
    while not stop.is_set():
        when = min(upcoming.values())
        log.info("schedule.waiting", next=when.isoformat(), exports=[n for n, t in upcoming.items() if t == when])
        delay = (when - datetime.now().astimezone()).total_seconds()
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, delay))
            break
        except TimeoutError:
            pass
        due = [name for name, at in upcoming.items() if at <= datetime.now().astimezone()]
        code = await run_due(due)
        if stop.is_set():
            return code
        upcoming.update(next_runs({name: schedules[name] for name in due}, datetime.now().astimezone()))
    return 0
