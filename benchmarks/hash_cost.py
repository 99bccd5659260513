"""CPU of segship's row and column hashes at 1M profiles: DuckDB's hash() (version 1) against
segship's own MD5 over canonical encodings (version 2, engine/hashing.py).

    .venv/bin/python benchmarks/hash_cost.py [--rows 1000000] [--repeat 3]

Times, in one DuckDB thread as the engine runs it, the two queries the engine makes of every
member on a first run: the plan's (key, row hash), and the send query's (mapped columns,
key, row hash, column hashes), drained as Arrow batches (version 2 with the column hashes
made bytes, as the engine does). The columns are those of the Braze benchmark export (6).
Prints the best of ``--repeat`` CPU times and µs per profile.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import profiles  # noqa: E402

from segship.embedded_duckdb import connect  # noqa: E402
from segship.sql_text import quote  # noqa: E402
from segship.engine import hashing  # noqa: E402

COLUMNS = ["customer_id", "email", "first_name", "last_name", "country", "phone"]


def best_cpu(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = profiles(args.rows)
    db = connect(160)
    db.execute(f"CREATE VIEW crm AS SELECT * FROM read_parquet('{path}')")
    relation = db.sql("SELECT * FROM crm")
    types = dict(zip(relation.columns, relation.types, strict=True))
    values = [f"s.{quote(c)}" for c in COLUMNS]
    encodings = hashing.encodings("s", COLUMNS, types)
    key = "CAST(s.customer_id AS VARCHAR)"
    mapped = ", ".join(values)

    def plan_query(row_hash: str, inner: str = "s.*"):
        return lambda: db.execute(f"CREATE OR REPLACE TEMP TABLE snap AS SELECT key, {row_hash} AS row_hash "
                                  f"FROM (SELECT {key} AS key, {inner} FROM crm AS s) AS s")

    def send_query(row_hash: str, column_hashes: str, as_bytes: bool):
        def drain() -> None:
            reader = db.sql(f"SELECT *, {row_hash} AS r FROM (SELECT {mapped}, {key} AS k, {column_hashes} AS c "
                            "FROM crm AS s) AS s").to_arrow_reader(8192)
            for batch in reader:
                if as_bytes:
                    hashing.column_hash_bytes(batch.column("c"), len(COLUMNS))
        return drain

    none = "0::BIGINT"
    values = [f"s.{quote(c)}" for c in COLUMNS]
    row_hash = hashing.row_hash_sql([f"c[{index + 1}]" for index in range(len(COLUMNS))])
    figures = {
        "plan, no hash (scan + key)": plan_query(none),
        "plan, v1 DuckDB hash()": plan_query(hashing.legacy_row_hash_sql(values)),
        "plan, v2 MD5 canonical": plan_query(row_hash, f"{hashing.column_hashes_sql(encodings)} AS c"),
        "send, no hashes": send_query(none, "NULL", False),
        "send, v1 DuckDB hash()": send_query(hashing.legacy_row_hash_sql(values),
                                             f"array_to_string({hashing.legacy_column_hashes_sql(values)}, ',')",
                                             False),
        "send, v2 MD5 canonical + bytes": send_query(row_hash,
                                                     hashing.column_hashes_sql(encodings), True),
    }
    print(f"{args.rows:,} profiles, {len(COLUMNS)} mapped columns, 1 DuckDB thread; best of {args.repeat} (CPU)")
    for name, work in figures.items():
        seconds = best_cpu(work, args.repeat)
        print(f"  {name:34s} {seconds:6.2f} s  {seconds / args.rows * 1e6:5.2f} µs/profile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
