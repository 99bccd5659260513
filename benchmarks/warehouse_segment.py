"""A PostgreSQL segment with the local planner: first run, unchanged re-run, 0.1 % changed; rows read out.

    .venv/bin/python benchmarks/warehouse_segment.py --rows 10000000 --rounds 2 \\
        --code before=/tmp/base/core --code after=core      # two checkouts, alternated
    .venv/bin/python benchmarks/warehouse_segment.py --rows 20000 --rounds 1   # a smoke run

Targets (DESIGN.md, issue 28): 10M members from PostgreSQL, local planner: first run < 400 MB
peak RSS, 0.1 % changed < 15 s. A real PostgreSQL 16 (the tests' fixture class) is started in a
temp dir on 127.0.0.1 and the benchmark's profiles are loaded into its table ``crm`` (or
``--url`` names a database that holds it already). Each round, for each ``--code`` (a
``core`` folder put first on segship's PYTHONPATH), in turn: a fresh workspace (SQLite state)
and unthrottled Braze sandbox, a first run, an unchanged re-run, then 0.1 % of the rows
updated in PostgreSQL and a run again. segship runs pinned to one core (``taskset -c 0``).
Rows read out of PostgreSQL are the table's ``seq_tup_read`` (``pg_stat_user_tables``) over
the run: the segment is ``SELECT * FROM crm``, one sequential scan each time it is read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402 - after the path tweak
from postgres_source import POSTGRES_SOURCE, URL_VARIABLE, load  # noqa: E402

from tests.postgres_server import PostgresServer  # noqa: E402 - the tests' fixture server, not another

#: One row in this many is changed for the "0.1 % changed" run.
CHANGED_ONE_IN = 1000


class Warehouse:
    """The database holding ``crm``, and its counters."""

    def __init__(self, url: str) -> None:
        self.url = url

    def execute(self, sql: str) -> list[tuple]:
        import adbc_driver_postgresql.dbapi

        with adbc_driver_postgresql.dbapi.connect(self.url, autocommit=True) as connection, \
                connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def rows_read(self) -> int:
        """Rows sequential scans of ``crm`` have read so far, once every ended session is counted."""
        query = "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'crm'::regclass"
        count = self.execute(query)[0][0]
        for _ in range(20):  # a session's counts arrive when it ends, a moment after its client
            time.sleep(0.5)
            again = self.execute(query)[0][0]
            if again == count:
                break
            count = again
        return int(count)

    def change(self, round_: int) -> int:
        """Change the first name of one row in ``CHANGED_ONE_IN`` (others each round); how many."""
        rows = self.execute(f"UPDATE crm SET first_name = first_name || '{round_}' "
                            f"WHERE substr(customer_id, 2)::bigint % {CHANGED_ONE_IN} = {round_} RETURNING 1")
        return len(rows)


def timed_run(ws: common.Workspace, name: str, env: dict[str, str], warehouse: Warehouse, timeout: float) \
        -> tuple[common.Run, int]:
    before = warehouse.rows_read()
    run = common.run_export(ws, name, env, timeout=timeout, wrapper=("taskset", "-c", "0"))
    common.check_ok(run, name)
    return run, warehouse.rows_read() - before


def phases(run: common.Run) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.export.get("phase_seconds", {}).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--code", action="append", default=[],
                        help="NAME=PATH of a core folder to run segship from (repeatable; default: this checkout)")
    parser.add_argument("--url", help="a PostgreSQL database that holds crm already (no server is started)")
    args = parser.parse_args()

    codes = dict(code.split("=", 1) for code in args.code) or {"this": str(common.ROOT / "core")}
    plugins = [str(common.ROOT / "plugins" / name) for name in ("braze", "sendinblue")]
    data = common.profiles(args.rows)
    print(f"machine: {common.machine()}; load average {common.load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="segship-bench-warehouse-") as folder:
        server = None
        if args.url:
            url = args.url
        else:
            server = PostgresServer(Path(folder))
            url = load(server, data)
        warehouse = Warehouse(url)
        lines = []
        try:
            for round_ in range(1, args.rounds + 1):
                for code_name, core in codes.items():
                    pythonpath = os.pathsep.join([str(Path(core).resolve()), *plugins])
                    with common.sandbox("braze", "--rate-limit", "0") as box:
                        name, body = common.braze_export(box.url, requests_per_3s=10_000_000)
                        with common.workspace(data, body, source=POSTGRES_SOURCE) as ws:
                            env = {URL_VARIABLE: url, common.BRAZE_KEY_VAR: box.api_key, "PYTHONPATH": pythonpath}
                            first, first_read = timed_run(ws, name, env, warehouse, args.timeout)
                            again, again_read = timed_run(ws, name, env, warehouse, args.timeout)
                            changed = warehouse.change(round_)
                            after, after_read = timed_run(ws, name, env, warehouse, args.timeout)
                    line = (f"round {round_} {code_name}: first run {first.seconds:.1f} s, peak RSS "
                            f"{first.peak_rss_mb:.0f} MB, {first_read:,} rows read; unchanged re-run "
                            f"{again.seconds:.1f} s ({phases(again)}), {again.peak_rss_mb:.0f} MB, "
                            f"{again_read:,} rows read; {changed:,} changed: {after.seconds:.1f} s "
                            f"({phases(after)}), {after.peak_rss_mb:.0f} MB, {after_read:,} rows read, "
                            f"{after.export.get('upserted')} upserted; load average {common.load_average()}")
                    common.log(line)
                    lines.append(line)
        finally:
            if server is not None:
                server.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
