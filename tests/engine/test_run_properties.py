"""Property: after any sequence of segment changes, refusals and runs cut short, one clean run leaves the
destination equal to the segment, and a further run sends nothing; after every run, a digest state
holds of the members is theirs.

In-process against the memory destination (a real DuckDB source file, real SQLite state). A run is
cut short the ways a process dies: the destination fails after some calls (nothing of that call
applied), or applies a call and the answer is lost (as when ``kill -9`` hits a batch in flight: state
knows the batch was in flight, and the next run settles it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segship.engine import buckets
from segship.engine.digest import DIGEST_KIND, mix_sql, signed_64
from segship.engine.planning import plan_export
from segship.engine.snapshot import Snapshot
from segship.engine.state import MembersDigest
from segship.plugins import Plugins

from ..conftest import StateTarget
from ..postgres_server import PostgresServer
from ..warehouse_digest import recorded_and_summed
from .conftest import Workspace
from .memory_destination import MemoryDestination

NAMES = ["Ann", "Bob", "Cy"]
SQLITE_STATE = StateTarget("sqlite", "{path: .segship/state.db}", {})  # the engine, not a backend, is held here
# id -> (name, whether the email is valid, value): rows with a bad email are refused by the mapping
segments = st.dictionaries(st.integers(1, 30), st.tuples(st.sampled_from(NAMES), st.booleans() | st.just(True),
                                                         st.integers(0, 99)), max_size=25)
cuts = st.one_of(st.none(), st.tuples(st.just("fails"), st.integers(0, 4)))
steps = st.lists(st.tuples(segments, cuts, st.sets(st.integers(1, 30), max_size=5)), min_size=1, max_size=2)


def rows_of(segment: dict[int, tuple[str, bool, int]]) -> list[tuple]:
    return [(key, f"user{key}@example.com" if valid else "not-an-email", name, value)
            for key, (name, valid, value) in sorted(segment.items())]


def cut_short(kind: str, after: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the destination die at its call number ``after`` + 1."""
    if kind == "fails":
        MemoryDestination.fail_after_calls = after
        return
    original_upsert, original_remove = MemoryDestination.upsert, MemoryDestination.remove

    def dying(original):
        async def call(self, items):
            results = await original(self, items)  # applied...
            if len(MemoryDestination.calls) > after:
                raise ConnectionResetError("the answer was lost")  # ...but never acknowledged
            return results
        return call

    monkeypatch.setattr(MemoryDestination, "upsert", dying(original_upsert))
    monkeypatch.setattr(MemoryDestination, "remove", dying(original_remove))


def assert_any_digest_is_of_the_members(workspace: Workspace, target: StateTarget = SQLITE_STATE) -> None:
    """A digest state holds is the one of the members it holds (the next plan trusts it instead of them);
    so is the one a planner schema holds of its members (summed again here in PostgreSQL)."""
    if target.planner is not None:
        recorded, summed = recorded_and_summed(target.planner, "sync")
        assert recorded in (None, summed)
    state = workspace.state()
    try:
        recorded = state.members_digest("sync")
        members = state.acknowledged("sync").read_all()  # noqa: F841 - read by DuckDB below
    finally:
        state.close()
    if recorded is not None and recorded.buckets is not None:  # a bucketed digest: each bucket's count
        with duckdb.connect() as db:
            counted = dict(db.execute(f"SELECT {buckets.bucket_sql('key')}, count(*) FROM members GROUP BY ALL")
                           .fetchall())
        record = buckets.decode(recorded.buckets).to_pylist()
        assert {row["bucket"] for row in record} >= set(counted)
        assert [row for row in record if row["members"] not in (buckets.DIRTY, counted.get(row["bucket"]))] == []
        assert recorded.members == sum(counted.values())
    elif recorded is not None:
        with duckdb.connect() as db:
            count, total = db.execute(f"SELECT count(*), coalesce(sum({mix_sql('key', 'row_hash', 'target')}"
                                      "::HUGEINT), 0) FROM members").fetchone()
        assert recorded == MembersDigest(DIGEST_KIND, count, signed_64(int(total)))


def assert_the_plan_by_bucket_is_the_full_one(workspace: Workspace) -> None:
    """What a plan by bucket finds (only the buckets that differ from state's record diffed) is what
    diffing every member finds."""
    def plan():
        state = workspace.state()
        try:
            return plan_export(workspace.config(), "sync", workspace.plugins, state)
        finally:
            state.close()

    by_bucket = plan()
    with pytest.MonkeyPatch.context() as unbucketed:
        unbucketed.setattr(Snapshot, "_bucketed", lambda self: False)
        assert by_bucket == plan()


def replay(history: list, plugins: Plugins, target: StateTarget = SQLITE_STATE) -> None:
    """Run the export through ``history``, then check one clean run and a further one."""
    MemoryDestination.reset()
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MEMORY_KEY", "memory-secret-key-123")
        for name, value in target.env.items():
            monkeypatch.setenv(name, value)
        workspace = Workspace(Path(folder), plugins, target)
        workspace.configure(batch_size=4, extra="safeguards: {max_removed_fraction: null}")
        segment: dict[int, tuple[str, bool, int]] = {}
        for segment, cut, refused in history:
            workspace.write(rows_of(segment))
            if target.warehouse is not None and not target.planned:
                assert_the_plan_by_bucket_is_the_full_one(workspace)
            MemoryDestination.refuse = {str(key) for key in refused}
            with pytest.MonkeyPatch.context() as faults:
                if cut is not None:
                    cut_short(*cut, faults)
                workspace.run()
            assert_any_digest_is_of_the_members(workspace, target)
            MemoryDestination.refuse, MemoryDestination.fail_after_calls = set(), None

        if target.warehouse is not None and not target.planned:
            assert_the_plan_by_bucket_is_the_full_one(workspace)
        clean = workspace.run()
        assert clean.outcome in ("succeeded", "rejects"), clean.message
        assert_any_digest_is_of_the_members(workspace, target)
        expected = {str(key): (name, value) for key, (name, valid, value) in segment.items() if valid}
        # every member the mapping takes is there with its current values, and no one outside the segment;
        # a member whose new row is refused keeps what was acknowledged before (its reject is retried)
        assert set(expected) <= MemoryDestination.members <= {str(key) for key in segment}
        assert {key: (MemoryDestination.profiles[key]["name"], MemoryDestination.profiles[key]["value"])
                for key in expected} == expected

        calls = len(MemoryDestination.calls)
        if target.warehouse is not None and not target.planned:
            assert_the_plan_by_bucket_is_the_full_one(workspace)
        again = workspace.run()
        assert (again.upserted, again.removed, len(MemoryDestination.calls)) == (0, 0, calls)
        # the bad emails, refused by the mapping as they are: not mapped again, still refused
        assert (again.rejected, again.plan["refused"]) == (0, len(segment) - len(expected))


def planned_in_a_warehouse(server: PostgresServer, *, planned: bool = True) -> StateTarget:
    """The variant whose source is a table of a new PostgreSQL database, planned there (or, not
    ``planned``, streamed to the local planner, which plans by bucket)."""
    url = server.create_database("planned")
    return StateTarget("warehouse" if planned else "streamed", "{path: .segship/state.db}", {"WAREHOUSE_URL": url},
                       warehouse=url, planned=planned)


@settings(max_examples=6, deadline=None,  # each example is 3 or 4 runs of the export
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=steps)
@example(history=[({1: ("Ann", False, 0)}, None, set())])  # one row the mapping refuses: still refused after
def test_a_clean_run_after_any_history_makes_the_destination_equal_the_segment(history, memory_plugins: Plugins):
    replay(history, memory_plugins)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=steps)
def test_the_same_holds_when_a_warehouse_plans_the_export(history, memory_plugins: Plugins,
                                                          postgres_server: PostgresServer):
    replay(history, memory_plugins, planned_in_a_warehouse(postgres_server))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=steps)
@example(history=[({1: ("Ann", False, 0)}, None, set())])
@example(history=[({key: ("Ann", True, key) for key in range(1, 21)}, None, set()),  # then one changes, one leaves
                  ({**{key: ("Ann", True, key) for key in range(1, 20)}, 7: ("Bob", True, 7)}, None, set())])
def test_the_same_holds_when_the_local_planner_plans_a_streamed_segment_by_bucket(
        history, memory_plugins: Plugins, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(buckets, "BUCKET_BITS", 2)  # four buckets: several members in each
    replay(history, memory_plugins, planned_in_a_warehouse(postgres_server, planned=False))


def variant(name: str, request: pytest.FixtureRequest) -> StateTarget:
    """``local``: a DuckDB source file; ``warehouse``: a PostgreSQL table planned there; ``streamed``: the
    same table streamed to the local planner, which plans it by bucket (four buckets here)."""
    if name == "local":
        return SQLITE_STATE
    if name == "streamed":
        request.getfixturevalue("monkeypatch").setattr(buckets, "BUCKET_BITS", 2)
    return planned_in_a_warehouse(request.getfixturevalue("postgres_server"), planned=name == "warehouse")


VARIANTS = pytest.mark.parametrize("name", ["local", "warehouse", "streamed"])


@pytest.mark.parametrize("history", [
    [({1: ("Ann", True, 0)}, ("answer_lost", 0), set()), ({1: ("Ann", True, 0)}, None, set())],  # stays: re-sent
    [({1: ("Ann", True, 0), 2: ("Bob", True, 5)}, None, set()), ({2: ("Bob", True, 5)}, ("answer_lost", 1), set()),
     ({2: ("Bob", True, 6)}, None, set())],  # a lost removal answer: removed again
])
@VARIANTS
def test_a_lost_answer_is_sent_again(history, name, memory_plugins: Plugins, request):
    replay(history, memory_plugins, variant(name, request))


@VARIANTS
def test_a_member_whose_join_answer_was_lost_and_who_then_leaves_is_removed(name, memory_plugins: Plugins, request):
    replay([({1: ("Ann", True, 0)}, ("answer_lost", 0), set()), ({}, None, set())], memory_plugins,
           variant(name, request))


def test_a_removal_the_destination_refuses_keeps_the_member_and_its_digest_out(memory_plugins: Plugins):
    replay([({1: ("Ann", True, 0), 2: ("Bob", True, 5)}, None, set()), ({1: ("Ann", True, 0)}, None, {2})],
           memory_plugins)
