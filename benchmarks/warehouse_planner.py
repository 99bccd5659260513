"""The warehouse planner at scale: a PostgreSQL table of profiles exported to the unthrottled Braze sandbox
with ``planner: {schema: segship}``, first run, unchanged re-runs and runs after 0.1 % of rows changed.

    .venv/bin/python benchmarks/warehouse_planner.py --rows 10000000            # 10M members, 2 rounds
    .venv/bin/python benchmarks/warehouse_planner.py --rows 100000000 --rounds 1 --skip-first
    .venv/bin/python benchmarks/warehouse_planner.py --rows 200000 --rounds 1   # a smoke run

Targets (DESIGN.md): at 10M members, unchanged re-run < 10 s with 0 member rows out of the
warehouse, 0.1 % changed < 10 s with only the changed rows out, first run < 400 MB peak RSS; at 100M,
an unchanged re-run < 60 s, 0 rows out, segship < 400 MB. A real PostgreSQL 16 server (the tests'
fixture class) is started in a temp dir (``--dir``: 100M rows need ~40 GB there) with
``--work-mem``; the rows are made in it by SQL (``generate_series``), so nothing is loaded through
segship. segship runs pinned to core 0 (``taskset -c 0``); PostgreSQL and the sandbox use any core.
Rows out of the warehouse are the plan's rows to send and leavers (``add + update + move + remove``):
nothing else is read out of it. ``--skip-first`` makes the member state in the warehouse by SQL
(the hashes the first run would write, computed by the same dialect) instead of sending every row
once, which at 100M would take hours against the sandbox.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402 - after the path tweak
from common import Figure, Run  # noqa: E402

from tests.postgres_server import PostgresServer  # noqa: E402 - the tests' fixture server, not another

URL_VARIABLE = "SEGSHIP_BENCH_WAREHOUSE_URL"
PLANNED_SOURCE = f'{{type: postgres, url: "${{env:{URL_VARIABLE}}}", planner: {{schema: segship}}}}'
PINNED = ("taskset", "-c", "0")
#: One row in this many changes between the changed runs (0.1 %).
CHANGED_EVERY = 1000


def make_rows(server: PostgresServer, rows: int) -> str:
    """A database with ``rows`` profiles in table ``crm``; its URL."""
    url = server.create_database("bench")
    database = url.rsplit("/", 1)[1]
    started = time.perf_counter()
    server.execute(f"""CREATE TABLE crm AS SELECT 'C' || lpad(i::text, 10, '0') AS customer_id,
                          'user' || i || '@example.com' AS email, 'First' || i AS first_name,
                          'Last' || (i % 5000) AS last_name, i AS n
                       FROM generate_series(1, {rows}) AS i""", database)
    server.execute("ANALYZE crm", database)
    common.log(f"made {rows:,} rows in PostgreSQL in {time.perf_counter() - started:.1f} s")
    return url


def member_state_by_sql(url: str, rows: int, ws: common.Workspace) -> None:
    """What a first run leaves in the planner schema (hashes, row digests, the members' digest), made in
    the warehouse, and segship's state saying the export's members are there (``--skip-first``)."""
    import adbc_driver_postgresql.dbapi

    from segship.engine.state import MembersLocation, open_state_at

    from segship.engine.digest import signed_64
    from segship.engine.planners import ColumnType
    from segship.engine.planners.postgres import PostgresDialect
    from segship.sql_text import literal, quote

    dialect = PostgresDialect()
    started = time.perf_counter()
    with adbc_driver_postgresql.dbapi.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        dialect.prepare_session(cursor)
        dialect.prepare(cursor, "segship")
        columns = ["customer_id", "email", *common.BRAZE_ATTRIBUTES]
        values = [(f"s.{quote(column)}", ColumnType(column, "text")) for column in columns]
        hashes = dialect.column_hashes([dialect.encoding(value, type_) for value, type_ in values])
        cursor.execute(f"INSERT INTO segship.segship_members (export, key, row_hash, column_hashes, identity, target, "
                       f"row_digest) SELECT 'to-braze', customer_id, {dialect.row_hash('h')}, h, NULL, 1, d "
                       f"FROM (SELECT s.customer_id, {hashes} AS h, {dialect.row_digest(values)} AS d FROM crm s) t")
        # the members' digest, as a run records it at its end
        cursor.execute(f"SELECT count(*), CAST(sum({dialect.member_mix('key', 'row_digest', 'target')}) AS text) "
                       "FROM segship.segship_members")
        count, total = cursor.fetchone()
        cursor.execute(f"INSERT INTO segship.segship_member_digests VALUES ('to-braze', "
                       f"{literal(dialect.digest_kind)}, {int(count)}, {signed_64(int(total))})")
    (ws.root / "state").mkdir(exist_ok=True)
    state = open_state_at(ws.root / "state" / "state.db")
    try:
        state.move_members_out("to-braze", MembersLocation("crm", "segship"))
    finally:
        state.close()
    common.log(f"made the member state of {rows:,} rows by SQL in {time.perf_counter() - started:.1f} s")


def change_rows(server: PostgresServer, url: str, round_: int) -> int:
    database = url.rsplit("/", 1)[1]
    server.execute(f"UPDATE crm SET first_name = 'First' || n || '-{round_}' WHERE n % {CHANGED_EVERY} = 0", database)
    server.execute("VACUUM ANALYZE crm", database)
    return int(server.execute(f"SELECT count(*) FROM crm WHERE n % {CHANGED_EVERY} = 0", database)[0][0])


def rows_out(run: Run) -> int:
    plan = run.export.get("plan", {})
    return sum(int(plan.get(action, 0)) for action in ("add", "update", "move", "remove"))


def describe(what: str, run: Run) -> str:
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in run.export.get("phase_seconds", {}).items())
    return (f"{what}: {run.seconds:.2f} s, peak RSS {run.peak_rss_mb:.0f} MB, CPU {run.cpu_seconds:.1f} s, "
            f"rows out {rows_out(run):,}, upserted {run.export.get('upserted')}, requests {run.requests}; {phases}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the PostgreSQL server keeps its data")
    parser.add_argument("--work-mem", default="256MB", help="PostgreSQL's work_mem for the classification's hash join")
    parser.add_argument("--skip-first", action="store_true", help="make the member state by SQL (see above)")
    args = parser.parse_args()

    print(f"machine: {common.machine()}; load average {common.load_average()}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="segship-bench-planner-", dir=args.dir))
    unchanged: list[Run] = []
    changed: list[tuple[Run, int]] = []
    first: Run | None = None
    try:
        server = PostgresServer(folder)
        try:
            server.execute(f"ALTER SYSTEM SET work_mem = '{args.work_mem}'")
            server.execute("SELECT pg_reload_conf()")
            url = make_rows(server, args.rows)
            env = {URL_VARIABLE: url}
            with common.sandbox("braze", "--rate-limit", "0") as box:
                name, body = common.braze_export(box.url, requests_per_3s=10_000_000)
                with common.workspace(Path("unused"), body, source=PLANNED_SOURCE) as ws:
                    env[common.BRAZE_KEY_VAR] = box.api_key
                    if args.skip_first:
                        member_state_by_sql(url, args.rows, ws)
                    else:
                        first = common.run_export(ws, name, env, timeout=args.timeout, wrapper=PINNED)
                        common.check_ok(first, "first run", sent=args.rows)
                        common.log(describe("first run", first))
                    for round_ in range(1, args.rounds + 1):
                        run = common.run_export(ws, name, env, timeout=args.timeout, wrapper=PINNED)
                        common.check_ok(run, "unchanged re-run", sent=0)
                        unchanged.append(run)
                        common.log(describe(f"round {round_} unchanged", run))
                        count = change_rows(server, url, round_)
                        run = common.run_export(ws, name, env, timeout=args.timeout, wrapper=PINNED)
                        common.check_ok(run, "0.1 % changed", sent=count)
                        changed.append((run, count))
                        common.log(describe(f"round {round_} 0.1 % changed ({count:,} rows)", run))
        finally:
            server.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    seconds = lambda runs: ", ".join(f"{run.seconds:.1f}" for run in runs)  # noqa: E731
    figures = [
        Figure(f"{args.rows:,} members, unchanged re-run", max(r.seconds for r in unchanged),
               60 if args.rows > 10_000_000 else 10, "s", note=f"runs {seconds(unchanged)} s; rows out "
               + ", ".join(str(rows_out(r)) for r in unchanged)),
        Figure(f"{args.rows:,} members, unchanged re-run: rows out of the warehouse",
               max(rows_out(r) for r in unchanged), 0, "rows"),
        Figure(f"{args.rows:,} members, 0.1 % changed", max(r.seconds for r, _ in changed), 10, "s",
               note=f"runs {seconds([r for r, _ in changed])} s; rows out "
               + ", ".join(f"{rows_out(r)} of {count} changed" for r, count in changed)),
        Figure(f"peak RSS of segship, re-runs, {args.rows:,} members",
               max(r.peak_rss_mb for r in [*unchanged, *(r for r, _ in changed)]), 400, "MB"),
    ]
    if first is not None:
        figures.append(Figure(f"peak RSS, first run of {args.rows:,} members", first.peak_rss_mb, 400, "MB",
                              note=f"{first.seconds:.0f} s"))
    print(f"load average after: {common.load_average()}")
    print(common.table(figures))
    sys.exit(0 if all(figure.met for figure in figures) else 1)


if __name__ == "__main__":
    main()
