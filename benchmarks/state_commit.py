"""CPU of committing a first run's members to SQLite state, by the order keys arrive in.

    .venv/bin/python benchmarks/state_commit.py                  # 1,000,000 members
    .venv/bin/python benchmarks/state_commit.py --rows 200000

Members are committed through the state contract as the engine commits an answered batch
(750 a commit: Braze's 10 requests of 75), as Arrow batches, then read back once (the
leavers' read, which folds the journal into ``members``). Keys ``C0000001``… come in key
order (the benchmarks' Parquet) or shuffled (a UUID key, a warehouse's hash order). The
figure is the process's CPU per member (``time.process_time``: every thread); bound 2 µs.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from segship_braze.destination import REQUESTS_PER_BATCH
from segship_braze.schemas import DEFAULT_BATCH_SIZE

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak

BATCH = DEFAULT_BATCH_SIZE * REQUESTS_PER_BATCH  # one answered Braze engine batch
COLUMN_HASH_BYTES = 8 * 4  # four mapped columns
BOUND_MICROSECONDS = 2.0


def batches(keys: list[str]) -> list[pa.RecordBatch]:
    """The answered batches' acknowledged rows, made before the clock starts."""
    rng = random.Random(7)
    return [pa.RecordBatch.from_pydict({
        "key": pa.array(chunk, pa.string()),
        "row_hash": pa.array([rng.getrandbits(62) for _ in chunk], pa.int64()),
        "column_hashes": pa.array([rng.randbytes(COLUMN_HASH_BYTES) for _ in chunk], pa.binary()),
        "identity": pa.array(chunk, pa.string())})
        for chunk in (keys[start:start + BATCH] for start in range(0, len(keys), BATCH))]


def commit_all(state, acknowledged: list[pa.RecordBatch]) -> None:
    for batch in acknowledged:
        state.commit_upserts("to-braze", batch, [], [])
    state.has_members("to-braze")  # a read: what was journaled is in ``members`` now


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from segship.engine.state import open_state_at

    print(f"committing {args.rows:,} members to SQLite state; load average {common.load_average()}")
    ordered = [f"C{index:07d}" for index in range(1, args.rows + 1)]
    shuffled = random.Random(7).sample(ordered, len(ordered))
    for order, keys in (("in key order", ordered), ("shuffled", shuffled)):
        with tempfile.TemporaryDirectory(prefix="segship-bench-commit-") as folder:
            state = open_state_at(Path(folder) / "state.db")
            acknowledged = batches(keys)
            cpu, wall = time.process_time(), time.perf_counter()
            commit_all(state, acknowledged)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            state.close()
        per_member = cpu / args.rows * 1e6
        print(f"  {order:13s} {per_member:6.2f} µs CPU per member (bound {BOUND_MICROSECONDS:.2f}, ratio "
              f"{per_member / BOUND_MICROSECONDS:.3f}, {'met' if per_member <= BOUND_MICROSECONDS else 'MISSED'}); "
              f"{wall:.1f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
