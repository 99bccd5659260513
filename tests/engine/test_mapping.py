"""The engine's side of a mapped batch: what it sends and what state keeps from the answer."""

from __future__ import annotations

import threading

import orjson
import pyarrow as pa
from segship.columns import JsonArray
from segship.destination import ConnectionContext, DroppedField, ExportContext, Record, RecordResult, RecordResults
from segship.engine.digest import KEY_HASH, MIX
from segship.engine.mapping import MappedRows, known_before, map_rows
from segship.engine.snapshot import COLUMN_HASHES, IS_NEW, KEY, ROW_HASH
from segship.engine.state import DroppedFields, Rejected
from segship_braze.destination import BrazeDestination

from .memory_destination import MemoryDestination


def column_hashes(*values: int) -> bytes:
    """Per-column hashes as state keeps them: 8 bytes a column."""
    return b"".join(value.to_bytes(8, "big") for value in values)


def rows_to_send(emails: list[str], news: list[bool]) -> pa.RecordBatch:
    keys = [f"k{n}" for n in range(len(emails))]
    return pa.RecordBatch.from_pydict({
        "id": [f"id{n}" for n in range(len(emails))], "email": emails, "name": ["x"] * len(emails),
        KEY: keys, ROW_HASH: list(range(len(emails))), COLUMN_HASHES: [column_hashes(1, 2, 3)] * len(emails), IS_NEW: news,
        MIX: pa.array(range(len(emails)), pa.uint64()), KEY_HASH: pa.array(range(len(emails)), pa.uint64())})


def rows_of(acknowledged: pa.RecordBatch) -> list[tuple]:
    """The acknowledged batch as (key, row hash, column hashes, identity) rows."""
    return [tuple(row.values())[:4] for row in acknowledged.to_pylist()]


def memory() -> MemoryDestination:
    return MemoryDestination(ConnectionContext("memory", {}),
                             ExportContext("sync", {}, {"id": "id", "email": "email", "fields": {"name": "name"}}))


def test_refused_rows_are_left_out_and_the_rest_keep_their_hashes():
    (batch,) = map_rows(rows_to_send(["a@x.io", "bad", "c@x.io"], [True] * 3), memory(), ["id", "email", "name"],
                     {}, full_resync=False, mapping="fp")
    # refused by the mapping: with the row's hash and the mapping's fingerprint, so a plan knows it unchanged
    assert batch.refused == [Rejected("k1", "invalid email 'bad'", 1, "fp")]
    assert (batch.records.keys, batch.records.identities) == (["k0", "k2"], ["id0", "id2"])
    assert (batch.hashes.column(ROW_HASH).to_pylist(), batch.size) == ([0, 2], 3)


def test_a_change_gets_its_changed_columns_and_remembers_the_identity_it_replaces():
    # the row was acknowledged as identity "old" with another hash of its second column (email)
    (batch,) = map_rows(rows_to_send(["a@x.io"], [False]), memory(), ["id", "email", "name"],
                     {"k0": (column_hashes(1, 9, 3), "old")}, full_resync=False)
    assert batch.records.payloads == [(False, {"email": "a@x.io"})]
    acknowledged, refused, missing = batch.answered([RecordResult("k0")])
    assert (rows_of(acknowledged), refused, missing) == ([("k0", 0, column_hashes(1, 2, 3), "id0")], [], 0)
    assert batch.replaced_identities(acknowledged) == [("k0", "old")]


async def test_state_is_asked_about_the_changed_rows_only_and_off_the_event_loop():
    asked = []

    def previous(keys: list[str]) -> dict:
        asked.append((keys, threading.get_ident()))
        return {"k1": (column_hashes(1, 9, 3), "old")}

    rows = rows_to_send(["a@x.io", "b@x.io", "c@x.io"], [True, False, True])
    assert await known_before(rows, previous) == {"k1": (column_hashes(1, 9, 3), "old")}
    assert await known_before(rows_to_send(["a@x.io"], [True]), previous) == {}  # every row new: no lookup
    ((keys, thread),) = asked
    assert keys == ["k1"] and thread != threading.get_ident()  # it waits for the state thread, not the loop


def three_records() -> MappedRows:
    (batch,) = map_rows(rows_to_send(["a@x.io", "b@x.io", "c@x.io"], [True] * 3), memory(), ["id", "email", "name"],
                        {}, full_resync=False)
    return batch


def test_a_column_wise_answer_acknowledges_all_but_the_refused():
    batch = three_records()
    acknowledged, refused, missing = batch.answered(RecordResults(batch.records.keys, {1: "no"}))
    assert acknowledged.column("key").to_pylist() == ["k0", "k2"]
    assert (refused, missing) == ([("k1", "no")], 0)


def test_a_list_answer_in_any_order_counts_missing_records_and_ignores_unknown_keys():
    batch = three_records()
    acknowledged, refused, missing = batch.answered(
        [RecordResult("k2"), RecordResult("stranger"), RecordResult("k0", "no")])
    assert (acknowledged.column("key").to_pylist(), refused, missing) == (["k2"], [("k0", "no")], 1)


def test_rows_mapped_whole_are_cut_into_batches_each_with_its_own_refused_rows():
    emails = ["a@x.io", "bad", "c@x.io", "d@x.io", "e@x.io", "worse"]
    batches = map_rows(rows_to_send(emails, [True] * 6), memory(), ["id", "email", "name"], {},
                       full_resync=False, size=4)
    assert [(b.records.keys, b.refused, b.size) for b in batches] == [
        (["k0", "k2", "k3"], [Rejected("k1", "invalid email 'bad'", 1)], 4),
        (["k4"], [Rejected("k5", "invalid email 'worse'", 5)], 2)]
    assert [b.hashes.column(ROW_HASH).to_pylist() for b in batches] == [[0, 2, 3], [4]]
    assert [b.records.identities for b in batches] == [["id0", "id2", "id3"], ["id4"]]
    assert [[payload[1]["email"] for payload in b.records.payloads] for b in batches] == [
        ["a@x.io", "c@x.io", "d@x.io"], ["e@x.io"]]
    whole = map_rows(rows_to_send(["a@x.io"] * 5, [True] * 5), memory(), ["id", "email", "name"], {},
                     full_resync=False, size=2)
    assert [b.records.keys for b in whole] == [["k0", "k1"], ["k2", "k3"], ["k4"]]
    assert [b.hashes.column(KEY).to_pylist() for b in whole] == [["k0", "k1"], ["k2", "k3"], ["k4"]]


def test_a_mapping_that_answers_json_arrays_is_cut_into_slices_of_them():
    braze = BrazeDestination(ConnectionContext("braze", {"api_key": "k", "rest_endpoint": "http://127.0.0.1:9"}),
                             ExportContext("sync", {"segment_api_identifier": "s"},
                                           {"customer_id": "id", "email": "email"}))
    rows = rows_to_send([f"{n}@x.io" for n in range(5)], [True] * 5)
    batches = map_rows(rows, braze, ["id", "email"], {}, full_resync=False, size=2)
    assert [type(b.records.payloads) for b in batches] == [JsonArray] * 3
    assert [orjson.loads(b.records.payloads.json()) for b in batches][2] == [
        {"external_id": "id4", "email": "4@x.io", "segship_segments": {"add": ["s"]}}]


def test_acknowledged_rows_whose_identities_are_their_keys_keep_them():
    rows = rows_to_send(["a@x.io", "b@x.io"], [True] * 2)
    rows = rows.set_column(rows.schema.get_field_index("id"), "id", rows.column(KEY))  # identity = key
    (batch,) = map_rows(rows, memory(), ["id", "email", "name"], {}, full_resync=False)
    acknowledged, _, _ = batch.answered(RecordResults(batch.records.keys, {1: "no"}))
    assert acknowledged.column("identity").to_pylist() == ["k0"]
    assert acknowledged.column("identity").type == pa.string()


class DroppingPhones(MemoryDestination):
    """The memory destination, leaving out a phone that is not digits."""

    def map(self, row, changed_columns=None):
        record = super().map(row, changed_columns)
        is_join, fields = record.payload
        if "phone" in fields and not str(fields["phone"]).isdigit():
            del fields["phone"]
            return Record(record.key, record.identity, (is_join, fields),
                          (DroppedField("phone", f"invalid phone {row['phone']!r}"),))
        return record


def test_dropped_fields_go_with_the_records_and_replace_those_of_the_columns_mapped():
    destination = DroppingPhones(ConnectionContext("memory", {}), ExportContext(
        "sync", {}, {"id": "id", "email": "email", "fields": {"name": "name", "phone": "phone"}}))
    rows = rows_to_send(["a@x.io", "b@x.io", "c@x.io"], [True, False, False])
    rows = rows.set_column(rows.schema.get_field_index(COLUMN_HASHES), COLUMN_HASHES,
                           pa.array([column_hashes(1, 2, 3, 4)] * 3)).append_column("phone", pa.array(["n/a", "123", "bad"]))
    before = {"k1": (column_hashes(1, 2, 3, 4), "id1"), "k2": (column_hashes(1, 2, 3, 9), "id2")}
    (batch,) = map_rows(rows, destination, ["id", "email", "name", "phone"], before, full_resync=False)
    assert batch.records.payloads[0] == (True, {"name": "x", "email": "a@x.io"})
    assert batch.dropped == {"k0": (DroppedField("phone", "invalid phone 'n/a'"),),
                             "k2": (DroppedField("phone", "invalid phone 'bad'"),)}
    assert batch.dropped_fields(batch.answered(RecordResults(batch.records.keys, {1: "no"}))[0]) == DroppedFields(
        whole=["k0"], remapped=[("k2", "phone")],  # k1 refused: what state holds of it stays
        fields=[("k0", "phone", "invalid phone 'n/a'"), ("k2", "phone", "invalid phone 'bad'")])
    (refusing,) = map_rows(rows, destination, ["id", "email", "name", "phone"], before, full_resync=False,
                           refuse_invalid_fields=True, mapping="fp")  # on_invalid_field: reject
    assert refusing.records.keys == ["k1"] and refusing.dropped == {}
    assert refusing.refused == [Rejected("k0", "invalid phone 'n/a'", 0, "fp"), Rejected("k2", "invalid phone 'bad'",
                                                                                        2, "fp")]


def test_the_sync_log_learns_what_changed_even_in_a_full_resync():
    """A full resync sends every field; the log still says which columns changed, and nothing of a row
    sent again unchanged."""
    known = {"k1": (column_hashes(1, 9, 3), "id1"), "k2": (column_hashes(1, 2, 3), "id2")}
    (batch,) = map_rows(rows_to_send(["a@x.io", "b@x.io", "c@x.io"], [True, False, False]), memory(),
                        ["id", "email", "name"], known, full_resync=True)
    assert batch.updates == {"k1": frozenset({"email"}), "k2": frozenset()}
    acknowledged, refused, _ = batch.answered([RecordResult("k0"), RecordResult("k1"), RecordResult("k2")])
    logged = batch.changes(refused).changes(acknowledged, refused).to_pylist()
    assert [(row["key"], row["identity"], row["action"], row["fields"]) for row in logged] == [
        ("k0", "id0", 0, None), ("k1", "id1", 1, "email")]  # an add, an update; k2 is unchanged


def test_a_first_runs_changes_are_its_acknowledged_columns():
    batch = three_records()
    acknowledged, refused, _ = batch.answered(RecordResults(["k0", "k1", "k2"], {1: "no"}))
    logged = batch.changes(refused).changes(acknowledged, refused).to_pylist()
    assert [(row["key"], row["identity"], row["action"], row["reason"]) for row in logged] == [
        ("k0", "id0", 0, None), ("k2", "id2", 0, None), ("k1", "id1", 4, "no")]  # two adds, one refused
