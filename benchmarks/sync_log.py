"""The sync log's cost in SQLite state: bytes per logged change, and the CPU a first run's commits
spend on it.

    .venv/bin/python benchmarks/sync_log.py                  # 1,000,000 members
    taskset -c 0 .venv/bin/python benchmarks/sync_log.py --rows 200000 --repeat 3

A first run's members are committed as ``state_commit.py`` commits them (a group of answered
Braze batches a commit, Arrow batches, then one read that folds the journal), without and with
their changes logged (``BatchChanges.changes``, as the engine builds them, then written by the
commit), alternately, ``--repeat`` times each, with keys in key order and shuffled; the figure
is the process's CPU per member (every thread), as ranges. Bytes per logged change are the pages
of the log's tables (SQLite's ``dbstat``) over the rows the log holds, for three shapes: adds
whose identity is the key (Braze), adds with an email identity (Brevo), and updates naming two
changed columns.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the path tweak
import state_commit  # noqa: E402

LOG_TABLES = "('sync_log', 'sync_log_runs')"


def commit_all(state, acknowledged: list[pa.RecordBatch], *, logged: bool, updated: bool = False) -> None:
    from segship.engine.state import LoggedChanges
    from segship.engine.sync_log import BatchChanges

    run_id = state.start_run("to-braze", dry_run=False)
    for batch in acknowledged:
        log = None
        if logged:
            keys = batch.column("key").to_pylist() if updated else ()
            changes = BatchChanges(updates=dict.fromkeys(keys, frozenset({"first_name", "last_name"})))
            log = LoggedChanges(run_id, changes.changes(batch, []))
        state.commit_upserts("to-braze", batch, [], [], log=log)
    state.members_by_target("to-braze", ["C0000001"])  # a read of members: the journal is folded


def with_emails(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with an email identity per key, as a Brevo export's."""
    emails = pa.array([f"user{key[1:]}@example.com" for key in batch.column("key").to_pylist()], pa.string())
    return batch.set_column(3, "identity", emails)


def log_bytes(state) -> float:
    """Bytes the log's tables take, per row logged."""
    size = state.one(f"SELECT sum(pgsize) FROM dbstat WHERE name IN {LOG_TABLES}")[0]
    return int(size) / int(state.one("SELECT count(*) FROM sync_log")[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each variant, alternated")
    args = parser.parse_args()
    from segship.engine.state import open_state_at

    print(f"{args.rows:,} members, SQLite state; load average {common.load_average()}")
    ordered = [f"C{index:07d}" for index in range(1, args.rows + 1)]
    shuffled = random.Random(7).sample(ordered, len(ordered))
    for order, keys in (("in key order", ordered), ("shuffled", shuffled)):
        acknowledged = state_commit.batches(keys)
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeat):
            for logged in (False, True):
                with tempfile.TemporaryDirectory(prefix="segship-bench-log-") as folder:
                    state = open_state_at(Path(folder) / "state.db")
                    started = time.process_time()
                    commit_all(state, acknowledged, logged=logged)
                    cpu[logged].append((time.process_time() - started) / args.rows * 1e6)
                    state.close()
        without, logged = (f"{min(cpu[k]):.2f}–{max(cpu[k]):.2f}" for k in (False, True))
        extra = [b - a for a, b in zip(cpu[False], cpu[True], strict=True)]
        print(f"  first run {order:13s}: {without} µs CPU per member without the log, {logged} with it "
              f"(+{min(extra):.2f}–{max(extra):.2f} µs)", flush=True)
    shapes = (("adds, identity = key (Braze)", state_commit.batches(ordered), False),
              ("adds, email identity (Brevo)", [with_emails(b) for b in state_commit.batches(ordered)], False),
              ("updates of two columns", state_commit.batches(ordered), True))
    for name, acknowledged, updated in shapes:
        with tempfile.TemporaryDirectory(prefix="segship-bench-log-") as folder:
            state = open_state_at(Path(folder) / "state.db")
            if updated:  # the members exist: this run's commits are their updates
                commit_all(state, acknowledged, logged=False)
            commit_all(state, acknowledged, logged=True, updated=updated)
            print(f"  {name:30s}: {log_bytes(state):5.1f} bytes per logged change", flush=True)
            state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
