"""The scheduler's rules, driven by a clock the test controls: no test sleeps or waits for a minute."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from segship.engine.schedule import run_schedule

START = datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC)


class FakeClock:
    """Time moves only when the scheduler waits or a run says how long it took."""

    def __init__(self, start: datetime = START) -> None:
        self.time = start
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self.time

    async def wait(self, seconds: float, stop: asyncio.Event) -> None:
        self.waits.append(seconds)
        if not stop.is_set():
            self.time += timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)


class Runner:
    """Records each run (export, start time); each run lasts ``durations[export]`` (default 1 s) and returns
    ``codes[export]`` (default 0), or raises when the code is an exception. Stops after ``runs`` runs."""

    def __init__(self, clock: FakeClock, stop: asyncio.Event, runs: int, *, durations=None, codes=None) -> None:
        self.clock, self.stop, self.runs = clock, stop, runs
        self.durations, self.codes = durations or {}, codes or {}
        self.calls: list[tuple[str, str]] = []
        self.running: set[str] = set()

    async def __call__(self, names: list[str]) -> int:
        (name,) = names  # one export per run
        assert name not in self.running, f"two runs of {name} at once"
        self.running.add(name)
        self.calls.append((name, self.clock.time.strftime("%H:%M:%S")))
        try:
            await asyncio.sleep(0)
            self.clock.time += timedelta(seconds=self.durations.get(name, 1))
            if len(self.calls) >= self.runs:
                self.stop.set()
            code = self.codes.get(name, 0)
            if isinstance(code, Exception):
                raise code
            return code
        finally:
            self.running.discard(name)


async def schedule(schedules: dict[str, str], runs: int, **runner_options) -> tuple[Runner, int]:
    clock, stop = FakeClock(), asyncio.Event()
    runner = Runner(clock, stop, runs, **runner_options)
    code = await asyncio.wait_for(run_schedule(schedules, runner, stop, clock=clock), timeout=10)
    return runner, code


async def test_each_export_runs_at_its_own_ticks_in_the_order_they_come_due():
    runner, code = await schedule({"hourly": "0 * * * *", "quarterly": "*/15 * * * *"}, runs=6)
    assert runner.calls == [("quarterly", "09:15:00"), ("quarterly", "09:30:00"), ("quarterly", "09:45:00"),
                            ("hourly", "10:00:00"), ("quarterly", "10:00:01"), ("quarterly", "10:15:00")]
    assert code == 0


async def test_a_failing_or_crashing_run_does_not_stop_the_scheduler():
    runner, _ = await schedule({"broken": "*/10 * * * *", "crashing": "*/10 * * * *", "fine": "*/10 * * * *"},
                               runs=6, codes={"broken": 1, "crashing": RuntimeError("boom")})
    assert [name for name, _ in runner.calls] == ["broken", "crashing", "fine"] * 2


async def test_ticks_missed_while_a_run_goes_run_once_not_once_per_missed_tick():
    # "slow" takes 3.5 minutes once: its own ticks at 09:02 and 09:03 and "quick"'s at 09:02 and 09:03 pass
    durations = {"slow": 210}
    clock, stop = FakeClock(), asyncio.Event()
    runner = Runner(clock, stop, runs=6, durations=durations)

    async def slow_once(names: list[str]) -> int:
        code = await runner(names)
        if names == ["slow"]:
            durations["slow"] = 1
        return code

    await asyncio.wait_for(run_schedule({"slow": "* * * * *", "quick": "* * * * *"}, slow_once, stop, clock=clock),
                           timeout=10)
    assert runner.calls == [
        ("quick", "09:01:00"), ("slow", "09:01:01"),   # slow runs until 09:04:31
        ("quick", "09:04:31"),                          # once for its two missed ticks
        ("slow", "09:04:32"),                           # once for its own ticks that passed while it ran
        ("quick", "09:05:00"), ("slow", "09:05:01"),   # back on the minute
    ]


async def test_never_two_runs_of_one_export_at_once_even_when_runs_outlast_the_interval():
    runner, _ = await schedule({"every-minute": "* * * * *"}, runs=5, durations={"every-minute": 150})
    # the Runner asserts no overlap; each run starts after the previous one ended
    starts = [datetime.strptime(at, "%H:%M:%S") for _, at in runner.calls]
    assert all((later - earlier).total_seconds() >= 150 for earlier, later in zip(starts, starts[1:]))


async def test_a_stop_while_waiting_returns_0_at_once():
    clock, stop = FakeClock(), asyncio.Event()

    class StopOnWait(FakeClock):
        async def wait(self, seconds: float, stop_event: asyncio.Event) -> None:
            stop_event.set()

    calls: list[list[str]] = []

    async def run_due(names: list[str]) -> int:
        calls.append(names)
        return 0

    code = await asyncio.wait_for(run_schedule({"x": "* * * * *"}, run_due, stop, clock=StopOnWait()), timeout=10)
    assert (code, calls) == (0, [])


async def test_a_stop_during_a_run_returns_its_exit_code_and_starts_nothing_else():
    runner, code = await schedule({"a": "* * * * *", "b": "* * * * *"}, runs=1, codes={"a": 1})
    assert (runner.calls, code) == ([("a", "09:01:00")], 1)


async def test_once_runs_the_exports_due_in_the_current_minute_together():
    clock, stop = FakeClock(datetime(2026, 1, 5, 9, 30, 12, tzinfo=UTC)), asyncio.Event()
    seen: list[list[str]] = []

    async def run_due(names: list[str]) -> int:
        seen.append(names)
        return 3

    schedules = {"half-hourly": "*/30 * * * *", "hourly": "0 * * * *", "minutely": "* * * * *"}
    assert await run_schedule(schedules, run_due, stop, once=True, clock=clock) == 3
    assert seen == [["half-hourly", "minutely"]]


async def test_the_watch_is_called_between_runs_at_least_every_minute_and_never_stops_the_scheduler():
    clock, stop = FakeClock(), asyncio.Event()
    runner = Runner(clock, stop, runs=2)
    watched: list[str] = []

    async def watch(now: datetime) -> None:
        watched.append(now.strftime("%H:%M:%S"))
        assert not runner.running, "the watch runs between runs only"
        if len(watched) == 2:
            raise RuntimeError("a watch that fails")  # logged; the scheduler goes on

    await asyncio.wait_for(run_schedule({"quarterly": "*/15 * * * *"}, runner, stop, clock=clock, watch=watch),
                           timeout=10)
    assert [name for name, _ in runner.calls] == ["quarterly", "quarterly"]
    # from 09:00:30 to the 09:15 run, each minute and when it comes due; then from its end on
    assert watched[:3] == ["09:00:30", "09:01:30", "09:02:30"]
    assert watched[watched.index("09:14:30") + 1:][:3] == ["09:15:00", "09:15:01", "09:16:01"]
    assert max(clock.waits) == 60


async def test_once_watches_after_its_runs():
    clock, stop = FakeClock(datetime(2026, 1, 5, 9, 30, 12, tzinfo=UTC)), asyncio.Event()
    order: list[str] = []

    async def run_due(names: list[str]) -> int:
        order.append("run")
        return 0

    async def watch(now: datetime) -> None:
        order.append("watch")

    await run_schedule({"hourly": "*/30 * * * *"}, run_due, stop, once=True, clock=clock, watch=watch)
    assert order == ["run", "watch"]
