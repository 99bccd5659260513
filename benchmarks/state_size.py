"""State on disk per member, with the engine's column hashes (8 bytes a mapped column, hash
version 2); bound: SQLite ≤ 100 bytes. (Hash version 1's comma-joined decimal text only
lives in state of an older segship until its first plan converts it.)

    .venv/bin/python benchmarks/state_size.py                 # 1,000,000 members, SQLite
    .venv/bin/python benchmarks/state_size.py --rows 10000000 --postgres

Members are committed through the state contract (``commit_upserts``), in key order as a
first run commits them, shaped like the ``pipeline`` benchmark's Braze export: keys
``C0000001``…, a signed 64-bit row hash, six mapped columns, the identity equal to the key,
all in the export's first target.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak

MAPPED_COLUMNS = 6
BATCH = 10_000


def fill(state, rows: int) -> float:
    from segship.engine.state import StateStore

    assert isinstance(state, StateStore)
    rng = random.Random(7)
    started = time.perf_counter()
    for start in range(1, rows + 1, BATCH):
        batch = []
        for index in range(start, min(rows + 1, start + BATCH)):
            hashes = [rng.getrandbits(63) for _ in range(MAPPED_COLUMNS)]
            column_hashes = b"".join(h.to_bytes(8, "big") for h in hashes)
            key = f"C{index:07d}"
            batch.append((key, rng.getrandbits(63) - 2**62, column_hashes, key))
        state.commit_upserts("to-braze", batch, [], [])
    state.has_members("to-braze")  # a read: a SQLite journal is folded into members, as a run's leavers do
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true", help="also measure a local PostgreSQL 16 (pgserver)")
    args = parser.parse_args()
    from segship.engine.state import open_state_at

    figures = []
    with tempfile.TemporaryDirectory(prefix="segship-bench-state-") as folder:
        state = open_state_at(Path(folder) / "state.db")
        seconds = fill(state, args.rows)
        state.close()  # the last connection checkpoints the WAL into the file
        size = sum(path.stat().st_size for path in Path(folder).glob("state.db*"))
    figures.append(common.Figure("SQLite state per member, 8-byte column hashes", size / args.rows, 100.0, "bytes",
                                 note=f"{size / 2**20:,.0f} MiB for {args.rows:,} members; filled in "
                                      f"{seconds:.1f} s"))
    print(f"  {figures[-1].name}: {figures[-1].value:.1f} bytes", flush=True)
    if args.postgres:
        with common.state_backend("postgres") as backend:
            state = open_state_at(backend.env["SEGSHIP_BENCH_STATE_URL"])
            seconds = fill(state, args.rows)
            state.close()
            size = backend.size_bytes(None)
        figures.append(common.Figure("PostgreSQL state per member, 8-byte column hashes", size / args.rows,
                                     float("inf"), "bytes", note=f"{size / 2**20:,.0f} MiB with indexes; filled "
                                                                 f"in {seconds:.1f} s; no bound in the issue"))
    print(f"machine: {common.machine()}; load average: {common.load_average()}\n")
    print(common.table(figures))
    return 0 if all(figure.met for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
