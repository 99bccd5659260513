"""Batches in flight: a group is recorded before it is sent and committed once, when answered."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable

import pyarrow as pa
import pytest

from segship.destination import RecordResults
from segship.engine import in_flight as in_flight_module
from segship.engine.in_flight import Answer, InFlight
from segship.engine.mapping import MappedRows, map_rows
from segship.engine.state import StateError, StateStore, open_state_at
from segship.source import SourceError

from .test_mapping import memory, rows_to_send


def batches(count: int, size: int = 2) -> list[MappedRows]:
    """``count`` mapped batches of ``size`` new rows, keys k0.. in order."""
    rows = rows_to_send([f"{n}@x.io" for n in range(count * size)], [True] * (count * size))
    return map_rows(rows, memory(), ["id", "email", "name"], {}, full_resync=False, size=size)


def source(sent: list[MappedRows], before: dict[int, Callable[[], None]] | None = None):
    """The batches as the engine's async generator gives them; ``before[i]()`` runs before batch ``i``."""
    async def each():
        for index, batch in enumerate(sent):
            if before and index in before:
                before[index]()
            yield batch

    return each()


def recorded(in_flight: InFlight, sent: list[MappedRows]) -> list[MappedRows]:
    async def collect():
        return [batch async for batch in in_flight.recorded(source(sent))]

    return asyncio.run(collect())


def answer(batch: MappedRows) -> Answer:
    acknowledged, refused, _ = batch.answered(RecordResults(batch.records.keys, {}))
    return Answer(acknowledged, [], refused, batch.size, 0.0)


def test_a_group_commits_once_when_its_last_batch_is_answered_and_clears_its_record(tmp_path, monkeypatch):
    monkeypatch.setattr(in_flight_module, "GROUP_BATCHES", 3)
    state = open_state_at(tmp_path / "state.db")
    in_flight = InFlight(state, "sync", 1)
    first, second, third = recorded(in_flight, batches(3))
    assert in_flight.answered(third, answer(third), 0) is None  # answers come in any order
    assert in_flight.answered(first, answer(first), 0) is None
    commit = in_flight.answered(second, answer(second), 0)
    assert commit is not None and commit.in_flight is not None
    # in the order the batches were sent, whatever the order of the answers
    assert commit.acknowledged.column("key").to_pylist() == ["k0", "k1", "k2", "k3", "k4", "k5"]
    state.commit_upserts("sync", commit.acknowledged, commit.replaced, commit.refused, in_flight=commit.in_flight)
    assert state.settle_in_flight("sync") == 0  # its record went with the commit
    assert state.acknowledged("sync").read_all().num_rows == 6
    assert in_flight.unfinished() == []
    state.close()


def test_a_stopped_run_commits_what_was_answered_and_keeps_the_group_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(in_flight_module, "GROUP_BATCHES", 3)
    state = open_state_at(tmp_path / "state.db")
    in_flight = InFlight(state, "sync", 1)
    first, _, third = recorded(in_flight, batches(3))
    assert in_flight.answered(first, answer(first), 0) is None
    assert in_flight.answered(third, answer(third), 0) is None
    (commit,) = in_flight.unfinished()  # the second was never answered
    assert commit.in_flight is None
    assert [answer.size for answer in commit.answers] == [2, 2]
    state.commit_upserts("sync", commit.acknowledged, commit.replaced, commit.refused, in_flight=commit.in_flight)
    # the unanswered batch may have been applied: the next plan folds it in, to be sent again
    assert state.settle_in_flight("sync") == 6
    assert {row["key"]: row["row_hash"] for row in state.acknowledged("sync").read_all().to_pylist()} == {
        "k0": 0, "k1": 1, "k2": 0, "k3": 0, "k4": 4, "k5": 5}
    state.close()


def test_a_group_with_a_record_left_unanswered_stays_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(in_flight_module, "GROUP_BATCHES", 2)
    state = open_state_at(tmp_path / "state.db")
    in_flight = InFlight(state, "sync", 1)
    first, second = recorded(in_flight, batches(2))
    first_answer = answer(first)
    first_answer.acknowledged = first_answer.acknowledged.slice(0, 1)  # k1 got no answer
    assert in_flight.answered(first, first_answer, 1) is None
    commit = in_flight.answered(second, answer(second), 0)
    assert commit is not None and commit.in_flight is None
    state.commit_upserts("sync", commit.acknowledged, commit.replaced, commit.refused, in_flight=commit.in_flight)
    assert state.settle_in_flight("sync") == 4  # the record stayed: k1 is folded in, to be sent again
    assert {row["key"]: row["row_hash"] for row in state.acknowledged("sync").read_all().to_pylist()} == {
        "k0": 0, "k1": 0, "k2": 2, "k3": 3}
    state.close()


def test_a_key_sent_twice_in_a_group_is_committed_once_as_last_sent(tmp_path, monkeypatch, postgres_url):
    # the source changed while the run read it: k0 came again in a later batch
    monkeypatch.setattr(in_flight_module, "GROUP_BATCHES", 2)
    for state in (open_state_at(tmp_path / "state.db"), open_state_at(postgres_url)):
        in_flight = InFlight(state, "sync", 1)
        first, second = recorded(in_flight, batches(2))
        again = answer(second)
        again.acknowledged = again.acknowledged.set_column(0, "key", pa.array(["k0", "k3"]))
        again.refused = [("k9", "no"), ("k9", "still no")]
        assert in_flight.answered(first, answer(first), 0) is None
        commit = in_flight.answered(second, again, 0)
        assert commit.acknowledged.column("key").to_pylist() == ["k1", "k0", "k3"]
        assert commit.refused == [("k9", "still no")]
        state.commit_upserts("sync", commit.acknowledged, commit.replaced, commit.refused, in_flight=commit.in_flight)
        assert {row["key"]: row["row_hash"] for row in state.acknowledged("sync").read_all().to_pylist()} == {
            "k0": 2, "k1": 1, "k3": 3}
        state.close()


def test_groups_close_at_8192_rows_or_16_batches(tmp_path, monkeypatch):
    state = open_state_at(tmp_path / "state.db")
    groups: list[int] = []  # rows of each group recorded
    record = state.record_in_flight
    monkeypatch.setattr(state, "record_in_flight", lambda export, keys, identities, target: (
        groups.append(len(keys)), record(export, keys, identities, target))[1])
    in_flight = InFlight(state, "sync", 1)
    recorded(in_flight, batches(20, size=1))
    recorded(in_flight, batches(3, size=4096))
    assert groups == [16, 4, 8192, 4096]
    state.close()


@pytest.fixture
def small_groups(tmp_path, monkeypatch) -> StateStore:
    """State, and groups of 2 batches (of 2 rows: ``batches``), at most three of them waiting."""
    monkeypatch.setattr(in_flight_module, "GROUP_BATCHES", 2)
    monkeypatch.setattr(in_flight_module, "AHEAD_ROWS", 12)
    return open_state_at(tmp_path / "state.db")


def test_groups_after_a_record_waiting_on_state_are_read_and_recorded_meanwhile(small_groups, monkeypatch):
    # a record waits behind the commits queued on the state thread (a fold): sending must not wait with it
    state = small_groups
    read_ahead = threading.Event()
    record = state.record_in_flight
    calls: list[str] = []

    def slow_first(export, keys, identities, target):
        if not calls:
            read_ahead.wait(timeout=10)  # held until the third group is read (so never, without reading ahead)
        calls.append(keys[0])
        return record(export, keys, identities, target)

    monkeypatch.setattr(state, "record_in_flight", slow_first)
    in_flight = InFlight(state, "sync", 1)

    async def first() -> MappedRows:
        async with contextlib.aclosing(in_flight.recorded(source(batches(10), {5: read_ahead.set}))) as iterator:
            return await anext(iterator)

    assert asyncio.run(first()).records.keys == ["k0", "k1"]
    assert read_ahead.is_set()  # groups 2 and 3 were read while the first record waited
    assert calls[0] == "k0"
    state.close()


def test_a_batch_is_sent_after_its_group_is_recorded_and_records_follow_the_sending(small_groups, monkeypatch):
    state = small_groups
    record = state.record_in_flight
    records: list[tuple[int, list[str]]] = []  # (id, keys), as state made them
    calls = itertools.count()

    def recording(export, keys, identities, target):
        if next(calls) % 3 == 0:
            time.sleep(0.05)  # each in a thread of its own: made at once, they could reach state in any order
        flight = record(export, keys, identities, target)
        records.append((flight, list(keys)))
        return flight

    monkeypatch.setattr(state, "record_in_flight", recording)
    in_flight = InFlight(state, "sync", 1)

    async def send_all() -> None:
        async for batch in in_flight.recorded(source(batches(10))):
            assert set(batch.records.keys) <= {key for _, keys in records for key in keys}

    asyncio.run(send_all())
    # ids in the order the groups were sent: settle_in_flight keeps a key's last record
    assert [keys[0] for _, keys in sorted(records)] == ["k0", "k4", "k8", "k12", "k16"]
    state.close()


def test_a_failed_record_stops_the_run_and_the_records_after_it_are_cleared(small_groups, monkeypatch):
    state = small_groups
    record = state.record_in_flight
    calls = []

    def second_fails(export, keys, identities, target):
        calls.append(keys[0])
        if len(calls) == 2:
            raise StateError("state went away")
        return record(export, keys, identities, target)

    monkeypatch.setattr(state, "record_in_flight", second_fails)
    in_flight = InFlight(state, "sync", 1)
    sent: list[MappedRows] = []

    async def send_all() -> None:
        async with contextlib.aclosing(in_flight.recorded(source(batches(10)))) as iterator:
            async for batch in iterator:
                sent.append(batch)

    with pytest.raises(StateError, match="went away"):
        asyncio.run(send_all())
    assert [batch.records.keys[0] for batch in sent] == ["k0", "k2"]  # the first group only
    assert len(calls) >= 3  # groups after the failed one were recorded too...
    assert state.settle_in_flight("sync") == 4  # ...and cleared: the first group's record alone stays
    state.close()


def test_groups_recorded_and_never_sent_have_their_records_cleared(small_groups):
    state = small_groups
    in_flight = InFlight(state, "sync", 1)

    async def stop_after_first() -> None:
        async with contextlib.aclosing(in_flight.recorded(source(batches(10)))) as iterator:
            async for _ in iterator:
                break  # the run stopped after sending one batch

    asyncio.run(stop_after_first())
    # only the group handed on stays recorded: its first batch was sent, its second never was
    assert state.settle_in_flight("sync") == 4
    assert sorted(row["key"] for row in state.acknowledged("sync").read_all().to_pylist()) == ["k0", "k1", "k2", "k3"]
    state.close()


def test_groups_larger_than_the_read_ahead_are_read_only_when_wanted(small_groups, monkeypatch):
    # Brevo: an import of 25,000 rows is larger than AHEAD_ROWS; one held back would cost 44 MB
    monkeypatch.setattr(in_flight_module, "AHEAD_ROWS", 3)  # groups of 4 rows
    in_flight = InFlight(small_groups, "sync", 1)
    events: list[str] = []
    sent = batches(8)

    async def send_all() -> None:
        reads = {index: (lambda index=index: events.append(f"read {index}")) for index in range(8)}
        async for batch in in_flight.recorded(source(sent, reads)):
            events.append(f"sent {sent.index(batch)}")

    asyncio.run(send_all())
    assert events == ["read 0", "read 1", "sent 0", "sent 1", "read 2", "read 3", "sent 2", "sent 3",
                      "read 4", "read 5", "sent 4", "sent 5", "read 6", "read 7", "sent 6", "sent 7"]
    small_groups.close()


def test_groups_read_before_the_source_failed_are_sent_then_its_error_raised(small_groups):
    in_flight = InFlight(small_groups, "sync", 1)
    got: list[MappedRows] = []

    def fail() -> None:
        raise SourceError("the warehouse went away")

    async def send_all() -> None:
        async with contextlib.aclosing(in_flight.recorded(source(batches(10), {6: fail}))) as iterator:
            async for batch in iterator:
                got.append(batch)

    with pytest.raises(SourceError, match="went away"):
        asyncio.run(send_all())
    assert [batch.records.keys[0] for batch in got] == ["k0", "k2", "k4", "k6", "k8", "k10"]
    assert small_groups.settle_in_flight("sync") == 12  # the three groups sent stay recorded, until answered
    small_groups.close()
