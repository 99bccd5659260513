"""Reading every acknowledged (key, row hash) of an export from state, as a plan does: time and the
growth of peak RSS, on SQLite and on a local PostgreSQL 16 (pgserver); bound: flat memory.

    .venv/bin/python benchmarks/state_read.py --rows 3000000

Members are written straight into the members table in SQL (the fastest way to fill it),
then the table is analysed, as autovacuum does after a run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak

FILL = {
    "sqlite": "INSERT INTO members SELECT 1, 'C' || printf('%08d', value), value, NULL, NULL FROM "
              "(WITH RECURSIVE c(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM c WHERE value < {rows}) "
              "SELECT value FROM c)",
    "postgres": "INSERT INTO members SELECT 1, 'C' || lpad(g::text, 8, '0'), g, NULL, NULL "
                "FROM generate_series(1, {rows}) g",
}


def measure(target, backend: str, rows: int) -> common.Figure:
    from segship.engine.state import open_state_at

    state = open_state_at(target)
    state.commit_upserts("bench", [("C", 1, None, "C")], [], [])  # the export's id is 1
    state.execute(FILL[backend].format(rows=rows))
    state.execute("ANALYZE members" if backend == "postgres" else "ANALYZE")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    read = sum(batch.num_rows for batch in state.acknowledged("bench"))
    seconds = time.perf_counter() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    state.close()
    return common.Figure(f"peak RSS growth reading {read:,} acknowledged rows ({backend})", grown, 64.0, "MB",
                         note=f"{seconds:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    args = parser.parse_args()
    figures = []
    with tempfile.TemporaryDirectory(prefix="segship-bench-state-") as folder:
        figures.append(measure(Path(folder) / "state.db", "sqlite", args.rows))
    with common.state_backend("postgres") as backend:
        figures.append(measure(backend.env["SEGSHIP_BENCH_STATE_URL"], "postgres", args.rows))
    print(f"machine: {common.machine()}; load average: {common.load_average()}\n")
    print(common.table(figures))
    return 0 if all(figure.met for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
