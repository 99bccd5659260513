"""The same profiles read from PostgreSQL and from Parquet, exported to the unthrottled Braze sandbox.

    .venv/bin/python benchmarks/postgres_source.py                  # 1,000,000 profiles, 2 rounds
    .venv/bin/python benchmarks/postgres_source.py --rows 20000 --rounds 1   # a smoke run

Target (DESIGN.md): 1M rows from PostgreSQL at least as many profiles/s as the same rows
from a Parquet file, peak RSS < 400 MB. A real PostgreSQL 16 server (the tests' fixture
class, from the ``pgserver`` wheel) is started in a temp dir on 127.0.0.1 and the Parquet
file's rows are loaded into its table ``crm`` (ADBC bulk ingest), so the segment
``SELECT * FROM crm`` is the same text in both configs. Rounds alternate Parquet and
PostgreSQL, each export with a fresh sandbox and fresh state; the best round of each is
compared (the machine is shared: the best run is the least disturbed one).
"""

from __future__ import annotations

import argparse
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
POSTGRES_SOURCE = f'{{type: postgres, url: "${{env:{URL_VARIABLE}}}"}}'


def load(server: PostgresServer, data: Path) -> str:
    """A database holding the Parquet file's rows as table ``crm``; its URL."""
    import adbc_driver_postgresql.dbapi
    import pyarrow.parquet as pq

    url = server.create_database("bench")
    started = time.perf_counter()
    with adbc_driver_postgresql.dbapi.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.adbc_ingest("crm", pq.ParquetFile(data).iter_batches(65_536), mode="create")
        cursor.execute("ANALYZE crm")
    common.log(f"loaded {data.name} into PostgreSQL in {time.perf_counter() - started:.1f} s")
    return url


def export(data: Path, rows: int, source: str | None, env: dict[str, str], timeout: float) -> Run:
    with common.sandbox("braze", "--rate-limit", "0") as box:
        name, body = common.braze_export(box.url, requests_per_3s=10_000_000)
        with common.workspace(data, body, source=source) as ws:
            run = common.run_export(ws, name, {**env, common.BRAZE_KEY_VAR: box.api_key}, timeout=timeout)
            common.check_ok(run, "postgres" if source else "parquet", sent=rows)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    data = common.profiles(args.rows)
    print(f"machine: {common.machine()}; load average {common.load_average()}", flush=True)
    runs: dict[str, list[Run]] = {"parquet": [], "postgres": []}
    with tempfile.TemporaryDirectory(prefix="segship-bench-pg-") as folder:
        server = PostgresServer(Path(folder))
        try:
            env = {URL_VARIABLE: load(server, data)}
            for round_ in range(1, args.rounds + 1):
                for kind, source in (("parquet", None), ("postgres", POSTGRES_SOURCE)):
                    run = export(data, args.rows, source, env, args.timeout)
                    runs[kind].append(run)
                    phases = ", ".join(f"{k} {v:.2f} s" for k, v in run.export.get("phase_seconds", {}).items())
                    common.log(f"round {round_} {kind}: {args.rows / run.seconds:,.0f} profiles/s "
                               f"({run.seconds:.2f} s), peak RSS {run.peak_rss_mb:.0f} MB, CPU "
                               f"{run.cpu_seconds:.1f} s; {phases}")
        finally:
            server.close()

    best = {kind: min(kind_runs, key=lambda run: run.seconds) for kind, kind_runs in runs.items()}
    parquet_rate, postgres_rate = (args.rows / best[kind].seconds for kind in ("parquet", "postgres"))
    figures = [
        Figure(f"{args.rows:,} profiles from PostgreSQL, unthrottled Braze sandbox", postgres_rate, parquet_rate,
               "profiles/s", higher_is_better=True,
               note=f"bound: the same rows from Parquet (best of {args.rounds}); PostgreSQL runs "
                    + ", ".join(f"{args.rows / r.seconds:,.0f}" for r in runs["postgres"]) + "; Parquet runs "
                    + ", ".join(f"{args.rows / r.seconds:,.0f}" for r in runs["parquet"])),
        Figure(f"peak RSS, {args.rows:,} profiles from PostgreSQL", max(r.peak_rss_mb for r in runs["postgres"]),
               400, "MB", note="Parquet: " + ", ".join(f"{r.peak_rss_mb:.0f}" for r in runs["parquet"]) + " MB"),
    ]
    print(f"load average after: {common.load_average()}")
    print(common.table(figures))
    sys.exit(0 if all(figure.met for figure in figures) else 1)


if __name__ == "__main__":
    main()
