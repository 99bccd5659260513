"""CPU of committing a first run's members to SQLite state, by the order keys arrive in.

    .venv/bin/python benchmarks/state_commit.py                  # 1,000,000 members
    .venv/bin/python benchmarks/state_commit.py --rows 200000

Members are committed through the state contract as the engine commits a group of answered
batches (8,250 a commit: 11 of Braze's batches of 10 requests of 75), as Arrow batches, then read back once (the
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
from segship.engine.in_flight import GROUP_BATCHES, GROUP_ROWS
from segship_braze.destination import REQUESTS_PER_BATCH
from segship_braze.schemas import DEFAULT_BATCH_SIZE

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak

ENGINE_BATCH = DEFAULT_BATCH_SIZE * REQUESTS_PER_BATCH  # one Braze engine batch
BATCH = ENGINE_BATCH * min(GROUP_BATCHES, -(-GROUP_ROWS // ENGINE_BATCH))  # a group of them, one commit
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
    state.members_by_target("to-braze", ["C0000001"])  # a read of members: the journal is folded


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
