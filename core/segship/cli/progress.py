"""Run progress: a rich bar (rows, rate, ETA) on a terminal, periodic log events otherwise."""

from __future__ import annotations

import sys
import time

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = structlog.get_logger("segship.progress")


class RichProgress:
    def __init__(self) -> None:
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]}"),
                             TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                             transient=False)
        self._task: TaskID | None = None
        self._started = 0.0
        self._done = 0

    def start(self, export: str, total: int) -> None:
        self._bar.start()
        self._started, self._done = time.monotonic(), 0
        self._task = self._bar.add_task(export, total=total, rate="")

    def advance(self, count: int) -> None:
        self._done += count
        elapsed = max(time.monotonic() - self._started, 1e-6)
        if self._task is not None:
            self._bar.update(self._task, advance=count, rate=f"{self._done / elapsed:,.0f} rows/s")

    def set_remaining(self, count: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, total=self._done + count)

    def finish(self) -> None:
        self._bar.stop()


class LogProgress:
    """One ``export.progress`` event every ``interval`` seconds."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._export = ""
        self._total = self._done = 0
        self._started = self._last = 0.0

    def start(self, export: str, total: int) -> None:
        self._export, self._total, self._done = export, total, 0
        self._started = self._last = time.monotonic()

    def advance(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            rate = self._done / max(now - self._started, 1e-6)
            log.info("export.progress", export=self._export, done=self._done, total=self._total,
                     rate=round(rate), eta_seconds=round(self.remaining / rate, 1) if rate else None)

    @property
    def remaining(self) -> int:
        return max(self._total - self._done, 0)

    def set_remaining(self, count: int) -> None:
        self._total = self._done + count

    def finish(self) -> None:
        pass


def progress_for_terminal() -> RichProgress | LogProgress:
    return RichProgress() if sys.stderr.isatty() else LogProgress()
