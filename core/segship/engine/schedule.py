"""Cron scheduling: run each export when its schedule comes due, one run at a time."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from croniter import croniter

log = structlog.get_logger("segship.schedule")


def next_runs(schedules: dict[str, str], after: datetime) -> dict[str, datetime]:
    return {name: croniter(expression, after).get_next(datetime) for name, expression in schedules.items()}


async def run_schedule(schedules: dict[str, str], run_due: Callable[[list[str]], Awaitable[object]], *,
                       once: bool = False) -> None:
    """Wait for the next due time, run the due exports, repeat until SIGINT/SIGTERM.

    ``--once`` runs the exports due in the current minute and returns. Runs that come
    due while another run is going are started when it ends (never skipped silently,
    never run twice at once; the state lock enforces that too).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    now = datetime.now().astimezone()
    if once:
        minute = now.replace(second=0, microsecond=0)
        due = [name for name, expression in schedules.items() if croniter.match(expression, minute)]
        if due:
            await run_due(due)
        return
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
        await run_due(due)
        now = datetime.now().astimezone()
        upcoming.update(next_runs({name: schedules[name] for name in due}, now))
