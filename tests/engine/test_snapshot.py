"""The snapshot's comparison of members with state, which lets an unchanged plan skip the key checks and the join.

``Snapshot._same_as_members`` must say "the same" exactly when the acknowledged rows are the
members, key for key, with the same row hash, all in the export's target; anything else
(a changed, added, removed, moved or duplicated member, two members swapping rows) sends the
plan through the full diff. Checked here on DuckDB tables of random rows, against a plain
Python comparison.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segship.engine.snapshot import Snapshot
from segship.plugins import Plugins

from ..conftest import StateTarget
from .conftest import Workspace

TARGET = 1
keys = st.sampled_from([f"C{i}" for i in range(8)] + ["", "é", "C1 "])
row_hashes = st.sampled_from([0, 1, 2, 2**62, 2**63 - 1, 7_000_000_000])
members = st.lists(st.tuples(keys, row_hashes), max_size=10)
acknowledged = st.lists(st.tuples(keys, row_hashes, st.sampled_from([1, 1, 1, 2])), max_size=10)


@pytest.fixture
def new_snapshot(tmp_path: Path, memory_plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Snapshot]:
    """A new snapshot of the engine tests' export each call (its state is never opened)."""
    monkeypatch.setenv("MEMORY_KEY", "memory-secret-key-123")
    workspace = Workspace(tmp_path, memory_plugins, StateTarget("sqlite", "{path: .segship/state.db}", {}))
    config = workspace.config()
    return lambda: Snapshot(config, config.exports["sync"], memory_plugins, ["id"])


def same_as_members(new_snapshot, member_rows, acknowledged_rows) -> bool:
    snapshot = new_snapshot()
    try:
        snapshot.db.execute("CREATE TABLE members (key VARCHAR, seg INTEGER, row_hash BIGINT)")
        snapshot.db.execute("CREATE TABLE acknowledged (key VARCHAR, row_hash BIGINT, target INTEGER)")
        if member_rows:
            snapshot.db.executemany("INSERT INTO members VALUES (?, 0, ?)", member_rows)
        if acknowledged_rows:
            snapshot.db.executemany("INSERT INTO acknowledged VALUES (?, ?, ?)", acknowledged_rows)
        return snapshot._same_as_members(TARGET)
    finally:
        snapshot.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=members, acknowledged=acknowledged)
# a row hash equal to the target: the xor of their hashes, as the mix was first made, cancelled out
@example(members=[("C3", 1), ("C3", 1)], acknowledged=[("C3", 1, 1), ("C3", 2, 2)])
def test_members_are_the_acknowledged_rows_exactly_when_they_are_equal_as_multisets(new_snapshot, members,
                                                                                    acknowledged):
    expected = Counter((key, row_hash, TARGET) for key, row_hash in members) == Counter(acknowledged)
    assert same_as_members(new_snapshot, members, acknowledged) is expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.dictionaries(keys, row_hashes, min_size=2, max_size=10), data=st.data())
def test_any_single_difference_from_state_is_seen(new_snapshot, rows, data):
    state = [(key, row_hash, TARGET) for key, row_hash in rows.items()]
    assert same_as_members(new_snapshot, list(rows.items()), state)
    first, second = data.draw(st.permutations(sorted(rows)))[:2]
    changes = {
        "swap": {**rows, first: rows[second], second: rows[first]},
        "changed": {**rows, first: rows[first] ^ 1},
        "left": {key: value for key, value in rows.items() if key != first},
    }
    for name, changed in changes.items():
        expected = Counter(changed.items()) == Counter(rows.items())
        assert same_as_members(new_snapshot, list(changed.items()), state) is expected, name
    assert not same_as_members(new_snapshot, [*rows.items(), (first, rows[first])], state + [(second, 5, TARGET)])
    moved = [(key, row_hash, 2 if key == first else TARGET) for key, row_hash, _ in state]
    assert not same_as_members(new_snapshot, list(rows.items()), moved)
