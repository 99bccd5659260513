"""What the benchmarks share: cached synthetic data, a config workspace, sandboxes, timed CLI runs, figures.

Everything runs on 127.0.0.1 and stops by itself: a sandbox is a subprocess that is
terminated (then killed) on exit, and an export that overruns its time limit is killed.
The export runs as ``segship export … --report`` in a child process, so its wall time
and peak RSS are those of the real CLI: its CPU from ``os.wait4``, its peak RSS from its
``VmHWM`` (the high-water mark of its memory since its exec), read as it runs. The kernel's
``ru_maxrss`` would not do (see ``tests/process_memory.py``).
"""

from __future__ import annotations

import compileall
import functools
import importlib.util
import json
import os
import platform
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' helpers: their PostgreSQL server, a child's peak memory
from tests.process_memory import high_water_kb  # noqa: E402 - after the path tweak

DATA_DIR = Path(__file__).resolve().parent / ".data"
GENERATOR = ROOT / "configs" / "data" / "make_profiles.py"
BIN = Path(sys.executable).parent
SEGSHIP = str(BIN / "segship")
SEGMENT_ID = "3c4a9e52-0000-4000-8000-000000000001"
BREVO_LIST_ID = 3
#: Environment variables the generated config reads its keys from (never literals).
BRAZE_KEY_VAR, BREVO_KEY_VAR = "SEGSHIP_BENCH_BRAZE_API_KEY", "SEGSHIP_BENCH_BREVO_API_KEY"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ----------------------------------------------------------------------------------------

def profiles(rows: int) -> Path:
    """A Parquet file of ``rows`` synthetic profiles (seeded, so identical every time), made once."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"profiles-{rows}.parquet"
    if not path.exists():
        log(f"generating {rows:,} profiles into {path.relative_to(ROOT)} (once; cached)")
        partial = path.with_suffix(".partial.parquet")
        subprocess.run([sys.executable, str(GENERATOR), "--rows", str(rows), "--out", str(partial)],
                       check=True, timeout=1800)
        partial.rename(path)
    return path


# -- the config workspace ----------------------------------------------------------------------

@dataclass
class Workspace:
    """A temporary config directory: one source over the Parquet file, one segment of every row."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "segship.yaml"


#: Braze attributes the benchmarks' exports map beside email and customer ID: four mapped fields,
#: the reference export of DESIGN.md's CPU target (before issue 13 they mapped four attributes).
BRAZE_ATTRIBUTES = ("first_name", "last_name")


def braze_export(url: str, *, requests_per_3s: int | None = None,
                 attributes: tuple[str, ...] = BRAZE_ATTRIBUTES) -> tuple[str, str]:
    settings = {"api_key": f"${{env:{BRAZE_KEY_VAR}}}", "rest_endpoint": url}
    if requests_per_3s is not None:
        settings["requests_per_3s"] = requests_per_3s
    connection = {"type": "braze", "display_name": "Braze sandbox", "data_privacy_consent": True,
                  "settings": settings}
    export = {"display_name": "Every profile to Braze", "connection": "braze", "segments": ["everyone"],
              "settings": {"segment_api_identifier": SEGMENT_ID},
              "mapping": {"customer_id": "customer_id", "email": "email",
                          "attributes": {name: name for name in attributes}},
              "safeguards": {"max_profiles": 100_000_000, "max_removed_fraction": 0.2}}
    return _yaml("braze", connection, "to-braze", export)


def brevo_export(url: str, *, requests_per_second: float | None = None,
                 poll_interval: float | None = None) -> tuple[str, str]:
    settings: dict[str, Any] = {"api_key": f"${{env:{BREVO_KEY_VAR}}}", "base_url": url}
    if requests_per_second is not None:
        settings["requests_per_second"] = requests_per_second
    if poll_interval is not None:
        settings["process_poll_interval"] = poll_interval
    connection = {"type": "sendinblue", "display_name": "Brevo sandbox", "data_privacy_consent": True,
                  "settings": settings}
    export = {"display_name": "Every profile to Brevo", "connection": "brevo", "segments": ["everyone"],
              "settings": {"list_id": BREVO_LIST_ID},
              "mapping": {"email": "email", "first_name": "first_name", "last_name": "last_name",
                          "phone": "phone"},
              "safeguards": {"max_profiles": 1_000_000, "max_removed_fraction": 0.2}}
    return _yaml("brevo", connection, "to-brevo", export)


def _yaml(connection_name: str, connection: dict, export_name: str, export: dict) -> tuple[str, str]:
    # JSON is YAML: no YAML writer needed, and nothing is quoted wrongly
    body = ("connections:\n" + textwrap.indent(f"{connection_name}: {json.dumps(connection)}\n", "  ")
            + "exports:\n" + textwrap.indent(f"{export_name}: {json.dumps(export)}\n", "  "))
    return export_name, body


@contextmanager
def workspace(data: Path, destination: str, *, state: State | None = None, keep: bool = False,
              source: str | None = None) -> Iterator[Workspace]:
    """A temp dir with ``segship.yaml`` (source, segment, state; ``destination`` adds the rest).

    The source ``crm`` is a DuckDB one over ``data`` unless ``source`` gives another (YAML
    flow mapping); the segment is ``SELECT * FROM crm`` either way. State is a SQLite file
    unless ``state`` says otherwise.
    """
    root = Path(tempfile.mkdtemp(prefix="segship-bench-"))
    source = source or f"{{type: duckdb, path: {json.dumps(str(data))}}}"
    state = state or State("sqlite", "{path: state/state.db}")
    try:
        (root / "segship.yaml").write_text(
            "version: 1\n"
            f"state: {state.yaml}\n"
            f"sources:\n  crm: {source}\n"
            "segments:\n  everyone: {source: crm, key: customer_id, sql: SELECT * FROM crm}\n"
            + destination)
        yield Workspace(root, dict(state.env))
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)


# -- state -----------------------------------------------------------------------------------------

@dataclass
class State:
    """Where a benchmark's state lives: the config's ``state:`` value and the variables it reads."""

    backend: str
    yaml: str
    env: dict[str, str] = field(default_factory=dict)
    server: Any = None

    def size_bytes(self, ws: Workspace) -> int:
        """Bytes the state takes: the SQLite file, or segship's tables in PostgreSQL (with indexes)."""
        if self.server is None:
            return sum(path.stat().st_size for path in (ws.root / "state").glob("state.db*"))
        rows = self.server.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                                   "ON n.oid = c.relnamespace WHERE n.nspname = 'segship' AND c.relkind = 'r'",
                                   "bench")
        return int(rows[0][0])

    def sync_log_bytes(self, ws: Workspace) -> tuple[int, int]:
        """Bytes the sync log's tables take (in the SQLite file: their pages, ``dbstat``), and its rows."""
        tables = "('sync_log', 'sync_log_runs')"
        if self.server is None:
            import sqlite3

            with sqlite3.connect(f"file:{ws.root / 'state' / 'state.db'}?mode=ro", uri=True) as db:
                size = db.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name IN {tables}").fetchone()[0]
                logged = db.execute("SELECT count(*) FROM sync_log").fetchone()[0]
            db.close()
            return int(size), int(logged)
        size = self.server.execute(f"SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                                   f"ON n.oid = c.relnamespace WHERE n.nspname = 'segship' AND c.relname IN {tables}",
                                   "bench")[0][0]
        logged = self.server.execute("SELECT count(*) FROM segship.sync_log", "bench")[0][0]
        return int(size), int(logged)


@contextmanager
def state_backend(backend: str) -> Iterator[State]:
    """SQLite in the workspace, or a real PostgreSQL 16 (the tests' pgserver fixture) in a temp dir."""
    if backend == "sqlite":
        yield State("sqlite", "{path: state/state.db}")
        return
    from tests.postgres_server import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="segship-bench-postgres-"))
    server = PostgresServer(root)
    try:
        server.execute("CREATE DATABASE bench")
        yield State("postgres", '{url: "${env:SEGSHIP_BENCH_STATE_URL}"}',
                    {"SEGSHIP_BENCH_STATE_URL": server.url("bench")}, server)
    finally:
        server.close()
        subprocess.run(["rm", "-rf", str(root)], check=False)


# -- sandboxes ------------------------------------------------------------------------------------

@dataclass
class Sandbox:
    name: str
    url: str           # the base URL it printed (…/v3 for Brevo)
    origin: str        # scheme://host:port, where /_sandbox/* lives
    api_key: str
    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        """User + system CPU time the sandbox process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.origin}/_sandbox/stats", timeout=30) as answer:  # noqa: S310 - 127.0.0.1
            return json.loads(answer.read())


@functools.cache
def compile_bytecode() -> None:
    """Compile segship's own modules (core and plugins) to bytecode, as pip does when it installs a
    wheel. An editable install under ``PYTHONDONTWRITEBYTECODE`` (set on some machines, CI's
    included) has none, and would compile every module at every start: 0.1 CPU-s of each run."""
    for package in ("segship", "segship_braze", "segship_sendinblue"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                compileall.compile_dir(location, quiet=1)


@contextmanager
def sandbox(name: str, *args: str, start_timeout: float = 30.0) -> Iterator[Sandbox]:
    """Start ``segship sandbox NAME --port 0 ARGS`` on 127.0.0.1; stop it (TERM, then KILL) on exit."""
    compile_bytecode()
    api_key = secrets.token_hex(16)
    env = {**os.environ, "SEGSHIP_SANDBOX_API_KEY": api_key}  # the key stays out of argv
    process = subprocess.Popen([SEGSHIP, "sandbox", name, "--host", "127.0.0.1", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                               start_new_session=True)
    try:
        url = _first_line(process, start_timeout)
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"sandbox {name} printed {url!r} instead of its URL")
        origin = "/".join(url.split("/")[:3])
        yield Sandbox(name, url, origin, api_key, process)
    finally:
        _stop(process)


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise RuntimeError(f"the sandbox printed nothing within {timeout:.0f} s")
    line = process.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"the sandbox exited (code {process.poll()}) before printing its URL")
    return line


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


# -- timed CLI runs -------------------------------------------------------------------------------

@dataclass
class Run:
    """One ``segship export`` child process: what it cost and what it reported."""

    exit_code: int
    seconds: float
    cpu_seconds: float     # user + system time of the segship process
    peak_rss_mb: float
    report: dict[str, Any]
    output: str

    @property
    def export(self) -> dict[str, Any]:
        return self.report["exports"][0]

    @property
    def requests(self) -> int:
        return int(self.export.get("http", {}).get("requests", 0))


def run_export(ws: Workspace, export: str, env: Mapping[str, str], *, timeout: float,
               extra: tuple[str, ...] = (), wrapper: tuple[str, ...] = ()) -> Run:
    """Run ``segship export EXPORT --report`` in a child; wall time and the child's own peak RSS
    (polled every 5 ms, so growth in its last 5 ms is missed: exports free memory as they end).

    ``wrapper`` runs the CLI under another command (``python -m cProfile -o FILE``)."""
    compile_bytecode()
    report_path = ws.root / f"report-{time.monotonic_ns()}.json"
    output_path = ws.root / "output.txt"
    command = [*wrapper, SEGSHIP, "export", export, "-c", str(ws.config), "--report", str(report_path), *extra]
    child_env = {**os.environ, **ws.env, **env}
    with output_path.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=child_env, cwd=ws.root, start_new_session=True)
        deadline = started + timeout
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, high_water_kb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                seconds = time.perf_counter() - started
                break
            if time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise TimeoutError(f"segship export {export} ran over its {timeout:.0f} s limit and was killed; "
                                   f"output: {output_path.read_text()[-2000:]}")
            time.sleep(0.005)
    process.returncode = os.waitstatus_to_exitcode(status)
    text = output_path.read_text()
    report = json.loads(report_path.read_text()) if report_path.exists() else {"exports": [{}]}
    return Run(process.returncode, seconds, usage.ru_utime + usage.ru_stime, peak_kb / 1024, report, text)



def check_ok(run: Run, what: str, *, sent: int | None = None) -> None:
    """Stop the benchmark if the run did not do what it is measured for."""
    export = run.export
    if run.exit_code != 0:
        raise RuntimeError(f"{what}: segship exited {run.exit_code}: {run.output[-2000:]}")
    if sent is not None and export.get("upserted") != sent:
        raise RuntimeError(f"{what}: upserted {export.get('upserted')}, expected {sent}: {run.output[-2000:]}")


# -- figures ---------------------------------------------------------------------------------------

@dataclass
class Figure:
    """A measured value against its bound; ``higher_is_better`` for throughputs."""

    name: str
    value: float
    bound: float
    unit: str
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float:
        """value / bound: ≤ 1 meets an upper bound, ≥ 1 meets a lower one."""
        if not self.bound:
            return 0.0 if not self.value else float("inf")
        return self.value / self.bound

    @property
    def met(self) -> bool:
        return self.value >= self.bound if self.higher_is_better else self.value <= self.bound


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpus} cores{f' ({model})' if model else ''}{memory}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table (measured, bound, ratio, met)."""
    lines = ["| benchmark | measured | bound | ratio | met | notes |", "|---|---|---|---|---|---|"]
    for f in figures:
        relation = "≥" if f.higher_is_better else "≤"
        lines.append(f"| {f.name} | {_number(f.value)} {f.unit} | {relation} {_number(f.bound)} {f.unit} | "
                     f"{f.ratio:.3f} | {'yes' if f.met else '**no**'} | {f.note} |")
    return "\n".join(lines)


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"
