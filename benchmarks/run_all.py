"""Measure segship against the targets of DESIGN.md and print each figure with its ratio to the bound.

    .venv/bin/python benchmarks/run_all.py                       # every benchmark, 1M profiles
    .venv/bin/python benchmarks/run_all.py --rows 20000          # a quick smoke run
    .venv/bin/python benchmarks/run_all.py --only braze --only rerun
    .venv/bin/python benchmarks/run_all.py --only braze --pin 0  # segship on CPU 0, the sandbox free

Benchmarks (each starts its own sandbox on 127.0.0.1, runs the real CLI in a child
process, and stops everything it started, also on failure or timeout):

- ``braze``: ROWS profiles to the Braze sandbox at its real limit (3,000 requests / 3 s);
  bound 1.15 × the rate-limit minimum (ceil(ROWS/75) requests at 1,000 a second). The
  same run gives the CPU figure: segship's CPU time (user + system) per profile, bound 6 µs.
- ``brevo``: ROWS profiles to the Brevo sandbox with Brevo's defaults (10 requests/s,
  imports processed after 1 s, the connector's default polling); bound 2 minutes.
- ``pipeline``: ROWS profiles to the Braze sandbox with its rate limit off (and the
  connection's pacing raised out of the way); bound 120,000 profiles/s, whole command.
- ``rerun``: the ``pipeline`` export run again unchanged; bound 10 s and zero requests.
- ``memory``: the peak RSS of every ROWS-profile export above; bound 400 MB.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak
from common import Figure, Run  # noqa: E402

BRAZE_OBJECTS_PER_REQUEST = 75
BRAZE_REQUESTS_PER_SECOND = 3000 / 3
#: segship's CPU per profile of a first Braze run (issue 13), and the unthrottled pipeline's rate.
CPU_MICROSECONDS_PER_PROFILE = 6.0
PIPELINE_PROFILES_PER_SECOND = 120_000
NAMES = ("braze", "brevo", "pipeline", "rerun", "memory")


class Session:
    """Figures and the peak RSS of every full export, across benchmarks."""

    def __init__(self, rows: int, timeout: float) -> None:
        self.rows = rows
        self.timeout = timeout
        self.data = common.profiles(rows)
        self.figures: list[Figure] = []
        self.full_exports: list[tuple[str, Run]] = []   # (benchmark, run) that sent every row
        self.pipeline_done = False
        self.wrapper: tuple[str, ...] = ()  # the command segship runs under (``taskset -c 0`` with --pin)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        met = "met" if figure.met else "MISSED"
        print(f"  {figure.name}: {figure.value:,.3f} {figure.unit} (bound {figure.bound:,.3f}, ratio "
              f"{figure.ratio:.3f}, {met}) {figure.note}", flush=True)

    def cpu_per_profile(self, run: Run) -> float:
        return run.cpu_seconds / self.rows * 1e6

    def phases(self, run: Run) -> str:
        phases = run.export.get("phase_seconds", {})
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())


def bench_braze(s: Session) -> None:
    """At Braze's real limit: the time is the rate limit's, plus what the pipeline can't hide."""
    requests = math.ceil(s.rows / BRAZE_OBJECTS_PER_REQUEST)
    minimum = requests / BRAZE_REQUESTS_PER_SECOND
    with common.sandbox("braze", "--rate-limit", "3000") as box:
        export, body = common.braze_export(box.url)
        with common.workspace(s.data, body, state=s.state) as ws:
            sandbox_cpu = box.cpu_seconds()
            run = common.run_export(ws, export, {common.BRAZE_KEY_VAR: box.api_key}, timeout=s.timeout,
                                    wrapper=s.wrapper)
            common.check_ok(run, "braze", sent=s.rows)
            stats, sandbox_cpu = box.stats(), box.cpu_seconds() - sandbox_cpu
    s.full_exports.append(("braze", run))
    s.add(Figure(f"{s.rows:,} profiles to Braze at 3,000 req / 3 s", run.seconds, 1.15 * minimum, "s",
                 note=f"minimum {minimum:.2f} s ({requests:,} requests at 1,000/s); ratio to the minimum "
                      f"{run.seconds / minimum:.3f}; {run.requests:,} requests, sandbox 429s "
                      f"{stats.get('rate_limited', 0)}; CPU: segship {run.cpu_seconds:.1f} s "
                      f"({run.cpu_seconds / run.seconds:.0%} of a core), sandbox "
                      f"{sandbox_cpu:.1f} s; {s.phases(run)}"))
    s.add(Figure(f"segship CPU per profile, first {s.rows:,}-profile Braze run", s.cpu_per_profile(run),
                 CPU_MICROSECONDS_PER_PROFILE, "µs", note=f"{run.cpu_seconds:.2f} CPU-s (user + system) of the "
                 f"segship process, start-up included; load average {common.load_average()}"))


def bench_brevo(s: Session) -> None:
    with common.sandbox("sendinblue", "--requests-per-second", "10", "--process-delay", "1.0") as box:
        export, body = common.brevo_export(box.url)
        with common.workspace(s.data, body, state=s.state) as ws:
            run = common.run_export(ws, export, {common.BREVO_KEY_VAR: box.api_key}, timeout=max(s.timeout, 300),
                                    wrapper=s.wrapper)
            common.check_ok(run, "brevo", sent=s.rows)
            stats = box.stats()
    s.full_exports.append(("brevo", run))
    in_list = stats.get("lists", {}).get(str(common.BREVO_LIST_ID))
    if in_list != s.rows:
        raise RuntimeError(f"brevo: the sandbox's list holds {in_list} contacts, expected {s.rows}")
    s.add(Figure(f"{s.rows:,} profiles to Brevo (10 req/s, 1 s processing)", run.seconds, 120.0, "s",
                 note=f"{stats.get('imports', 0)} imports, {run.requests} requests; CPU: segship "
                      f"{run.cpu_seconds:.1f} s ({s.cpu_per_profile(run):.1f} µs/profile); {s.phases(run)}"))


def bench_pipeline(s: Session) -> None:
    """Unthrottled, then (``rerun``) the same export again with nothing changed."""
    with common.sandbox("braze", "--rate-limit", "0") as box:
        export, body = common.braze_export(box.url, requests_per_3s=10_000_000)
        with common.workspace(s.data, body, state=s.state) as ws:
            env = {common.BRAZE_KEY_VAR: box.api_key}
            sandbox_cpu = box.cpu_seconds()
            run = common.run_export(ws, export, env, timeout=s.timeout, wrapper=s.wrapper)
            common.check_ok(run, "pipeline", sent=s.rows)
            sandbox_cpu = box.cpu_seconds() - sandbox_cpu
            s.full_exports.append(("pipeline", run))
            upsert = run.export.get("phase_seconds", {}).get("upsert") or float("nan")
            s.add(Figure(f"pipeline, {s.rows:,} profiles, unthrottled Braze sandbox", s.rows / run.seconds,
                         PIPELINE_PROFILES_PER_SECOND, "profiles/s", higher_is_better=True,
                         note=f"whole command {run.seconds:.2f} s; sending phase alone "
                              f"{s.rows / upsert:,.0f} profiles/s; CPU: segship {run.cpu_seconds:.1f} s "
                              f"({s.cpu_per_profile(run):.1f} µs/profile), "
                              f"sandbox {sandbox_cpu:.1f} s; {s.phases(run)}"))
            if "rerun" in s.selected:
                before = box.stats().get("requests", 0)
                again = common.run_export(ws, export, env, timeout=s.timeout, wrapper=s.wrapper)
                common.check_ok(again, "rerun", sent=0)
                served = box.stats().get("requests", 0) - before
                s.add(Figure(f"unchanged re-run of {s.rows:,} profiles", again.seconds, 10.0, "s",
                             note=f"plan {again.export.get('plan', {}).get('unchanged', 0):,} unchanged; "
                                  f"CPU: segship {again.cpu_seconds:.1f} s; {s.phases(again)}"))
                s.add(Figure("requests of the unchanged re-run", served, 0, "requests",
                             note=f"counted by the sandbox; the run reported {again.requests}"))
                s.full_exports.append(("rerun", again))
            # the members' state apart from the sync log, a history of each change kept for its retention
            log_size, logged = s.state.sync_log_bytes(ws)
            size = s.state.size_bytes(ws) - log_size
            s.add(Figure(f"state per member ({s.state.backend}), the sync log aside", size / s.rows,
                         100.0 if s.state.server is None else float("inf"), "bytes",
                         note=f"{size / 2**20:,.0f} MiB for {s.rows:,} members"))
            s.add(Figure(f"sync log per logged change ({s.state.backend})", log_size / max(logged, 1),
                         float("inf"), "bytes", note=f"{log_size / 2**20:,.0f} MiB for {logged:,} changes "
                                                     "(the first run's adds; the re-run logs none)"))


def bench_memory(s: Session) -> None:
    if not s.full_exports:
        bench_pipeline(s)
    for name, run in s.full_exports:
        s.add(Figure(f"peak RSS, {s.rows:,}-profile export ({name})", run.peak_rss_mb, 400.0, "MB",
                     note="VmHWM of the segship process"))


BENCHMARKS: dict[str, Callable[[Session], None]] = {
    "braze": bench_braze, "brevo": bench_brevo, "pipeline": bench_pipeline, "memory": bench_memory,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="profiles per export (default 1,000,000)")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only these (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before an export is killed")
    parser.add_argument("--state", choices=("sqlite", "postgres"), default="sqlite",
                        help="state backend: a SQLite file (default) or a local PostgreSQL 16 server (pgserver)")
    parser.add_argument("--pin", metavar="CPU", help="run segship on this CPU only (taskset -c CPU); the "
                                                     "sandbox stays free to use every core")
    args = parser.parse_args()
    with common.state_backend(args.state) as state:
        return run(args, state)


def run(args: argparse.Namespace, state: common.State) -> int:
    selected = args.only or list(NAMES)
    session = Session(args.rows, args.timeout)
    session.selected = set(selected)
    session.state = state
    session.wrapper = ("taskset", "-c", args.pin) if args.pin is not None else ()
    started = datetime.now(UTC)
    print(f"segship benchmarks, {args.rows:,} profiles, {state.backend} state, {started:%Y-%m-%d %H:%M} UTC"
          + (f", segship pinned to CPU {args.pin}" if args.pin is not None else ""))
    print(f"machine: {common.machine()}; load average before: {common.load_average()}", flush=True)
    for name in NAMES:
        if name not in selected:
            continue
        if name == "rerun":
            if "pipeline" not in selected:
                bench_pipeline(session)
            continue
        print(f"{name}:", flush=True)
        begun = time.monotonic()
        BENCHMARKS[name](session)
        common.log(f"{name} took {time.monotonic() - begun:.1f} s")
    print(f"\nload average after: {common.load_average()} (other work on the machine slows every figure)\n")
    print(common.table(session.figures))
    missed = [f.name for f in session.figures if not f.met]
    print(f"\n{len(session.figures) - len(missed)} of {len(session.figures)} figures within their bound"
          + (f"; missed: {'; '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
