"""ExportRun with the in-process memory destination: diff sync, rejects, resume, safeguards."""

from __future__ import annotations

import asyncio

import pytest

from segship.engine.snapshot import Snapshot
from segship.engine.state.sql import SqlState

from .conftest import profiles
from .memory_destination import MemoryDestination
from .test_run_properties import assert_any_digest_is_of_the_members


def test_first_run_sends_every_member_then_an_unchanged_rerun_sends_nothing(workspace, sent):
    workspace.write(profiles(25))
    first = workspace.run()
    assert (first.outcome, first.upserted, first.plan["add"]) == ("succeeded", 25, 25)
    assert MemoryDestination.members == {str(i) for i in range(1, 26)}
    calls = len(MemoryDestination.calls)

    again = workspace.run()
    assert (again.outcome, again.upserted, again.plan["unchanged"]) == ("succeeded", 0, 25)
    assert len(MemoryDestination.calls) == calls


def test_an_unchanged_rerun_after_a_completed_run_is_planned_without_reading_state(workspace, monkeypatch):
    workspace.write(profiles(25))
    workspace.run()
    recorded = workspace.state().members_digest("sync")
    assert recorded is not None and recorded.members == 25

    def unread(self, export):
        raise AssertionError("state was read")

    monkeypatch.setattr(SqlState, "acknowledged", unread)
    again = workspace.run()
    assert (again.outcome, again.upserted, again.plan["unchanged"]) == ("succeeded", 0, 25)
    workspace.write(profiles(25, changed={4: "Renamed"}))  # the members no longer sum to the digest
    changed = workspace.run()
    assert changed.outcome == "failed" and "state was read" in changed.message


def test_a_run_that_leaves_rejects_records_no_digest_and_the_next_plan_reads_state(workspace):
    workspace.write(profiles(10))
    MemoryDestination.refuse = {"5"}
    assert workspace.run().outcome == "rejects"
    assert workspace.state().members_digest("sync") is None
    MemoryDestination.refuse = set()
    retry = workspace.run()
    # refused by the destination: sent again, planned as a retry, not as a member to add
    assert (retry.plan["add"], retry.plan["retry"], retry.plan["unchanged"], retry.upserted) == (0, 1, 9, 1)
    assert workspace.state().members_digest("sync") is not None  # complete now


def test_a_digest_of_another_hash_function_is_not_trusted(workspace, sent):
    workspace.write(profiles(10))
    workspace.run()
    state = workspace.state()
    recorded = state.members_digest("sync")
    state.record_members_digest("sync", recorded._replace(kind="duckdb 0.0.1 hash"))
    state.close()
    workspace.write(profiles(10, changed={7: "Renamed"}))
    before = len(sent())
    assert workspace.run().plan["update"] == 1
    assert [key for key, _ in sent()[before:]] == ["7"]
    now = workspace.state().members_digest("sync")  # the run completed: a digest of this kind again
    assert (now.kind, now.members) == (recorded.kind, 10) and now.digest != recorded.digest


def test_no_digest_is_recorded_when_the_source_changed_the_keys_while_rows_were_sent(workspace, monkeypatch):
    workspace.write(profiles(10))
    workspace.run()
    original = Snapshot.rows_to_send

    def changing(self, *args, **kwargs):  # member 3 leaves, 99 comes, after the plan and before the send
        workspace.write([row for row in profiles(10) if row[0] != 3] + [(99, "user99@example.com", "Name99", 99)])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Snapshot, "rows_to_send", changing)
    resync = workspace.run(full_resync=True)  # every member sent again: no join with the plan
    assert (resync.outcome, resync.plan["update"], resync.upserted) == ("succeeded", 10, 10)
    assert workspace.state().members_digest("sync") is None  # 3 is still in state, 99 too: not the tally
    monkeypatch.setattr(Snapshot, "rows_to_send", original)
    after = workspace.run()
    assert (after.plan["remove"], after.removed) == (1, 1)
    assert MemoryDestination.members == {str(i) for i in range(1, 11) if i != 3} | {"99"}


def test_a_changed_column_sends_that_member_with_only_that_column(workspace, sent):
    workspace.write(profiles(12))
    workspace.run()
    before = len(sent())
    workspace.write(profiles(12, changed={7: "Renamed"}))
    report = workspace.run()
    assert (report.plan["update"], report.upserted) == (1, 1)
    changes = sent()[before:]
    # (is_join, fields): not a join, and of the mapped fields only the changed one (email is always sent)
    assert changes == [("7", (False, {"name": "Renamed", "email": "user7@example.com"}))]


def test_members_who_leave_are_removed(workspace):
    workspace.write(profiles(20))
    workspace.run()
    workspace.write(profiles(18))
    report = workspace.run()
    assert (report.plan["remove"], report.removed) == (2, 2)
    assert MemoryDestination.members == {str(i) for i in range(1, 19)}
    assert len(workspace.acknowledged()) == 18


def test_rows_refused_by_mapping_or_destination_are_rejects_and_retried_next_run(workspace):
    rows = profiles(10)
    rows[2] = (3, "not-an-email", "Name3", 3)
    workspace.write(rows)
    MemoryDestination.refuse = {"5"}
    report = workspace.run()
    assert report.outcome == "rejects"
    assert (report.rejected, report.new_rejects) == (2, 2)
    # grouped by kind of reason, without the row's values (no personal data in reports)
    assert dict(report.rejects_by_reason) == {"invalid email '…'": 1, "refused by the destination": 1}
    rejects = {row["key"]: row for row in workspace.state().rejects("sync")}
    assert set(rejects) == {"3", "5"} and rejects["5"]["attempts"] == 1
    assert (rejects["3"]["origin"], rejects["5"]["origin"]) == ("mapping", "destination")
    assert rejects["3"]["since_run"] == rejects["5"]["since_run"] == report.run_id

    MemoryDestination.refuse = set()
    retry = workspace.run()
    # the destination's refusal is sent again; the row the mapping refused, unchanged, is not mapped again
    assert (retry.plan["add"], retry.plan["retry"], retry.plan["refused"]) == (0, 1, 1)
    assert retry.plan["refused_since_run"] == report.run_id and retry.plan["examples"]["refused"] == ["3"]
    assert (retry.outcome, retry.upserted, retry.rejected, retry.new_rejects) == ("succeeded", 1, 0, 0)
    rejects = {row["key"]: row for row in workspace.state().rejects("sync")}
    assert set(rejects) == {"3"} and rejects["3"]["attempts"] == 1

    rows[2] = (3, "still-not-an-email", "Name3", 3)  # changed, refused again for the same kind of reason
    workspace.write(rows)
    again = workspace.run()
    assert (again.plan["retry"], again.plan["refused"], again.rejected, again.new_rejects) == (1, 0, 1, 0)
    assert again.outcome == "succeeded"
    assert workspace.state().rejects("sync")[0]["attempts"] == 2

    workspace.write(profiles(10)[:2] + profiles(10)[3:])  # the bad row leaves the segment
    workspace.run()
    assert workspace.state().rejects("sync") == []


def test_a_member_whose_change_the_mapping_still_refuses_is_summed_as_acknowledged(workspace):
    rows = profiles(5)
    workspace.write(rows)
    workspace.run()
    rows[1] = (2, "not-an-email", "Name2", 2)  # the member's new row is refused: state keeps the one acknowledged
    workspace.write(rows)
    assert workspace.run().outcome == "rejects"
    held = workspace.run()
    assert (held.outcome, held.plan["refused"], held.plan["unchanged"]) == ("succeeded", 1, 4)
    recorded = workspace.state().members_digest("sync")
    assert recorded is not None and recorded.members == 5
    assert_any_digest_is_of_the_members(workspace)


def test_strict_makes_any_refused_row_a_rejects_outcome_still_refused_ones_too(workspace):
    rows = profiles(5)
    rows[1] = (2, "not-an-email", "Name2", 2)
    workspace.write(rows)
    assert workspace.run().outcome == "rejects"
    assert workspace.run().outcome == "succeeded"  # still refused, known
    strict = workspace.run(strict=True)
    assert (strict.outcome, strict.plan["refused"], strict.rejected) == ("rejects", 1, 0)


def test_an_unchanged_reject_is_mapped_again_when_the_mapping_changes(workspace):
    rows = profiles(5)
    rows[1] = (2, "not-an-email", "Name2", 2)
    workspace.write(rows)
    workspace.run()
    workspace.configure(batch_size=20)  # other settings: every row is sent, and mapped, again
    again = workspace.run()
    assert again.plan["refused"] == 0 and (again.rejected, again.new_rejects) == (1, 0)


def test_dry_run_maps_everything_and_sends_and_writes_nothing(workspace):
    rows = profiles(10)
    rows[0] = (1, "", "Name1", 1)
    workspace.write(rows)
    report = workspace.run(dry_run=True)
    assert (report.outcome, report.rejected) == ("rejects", 1)
    assert MemoryDestination.calls == []
    assert len(workspace.acknowledged()) == 0
    assert workspace.state().rejects("sync") == []


def test_full_resync_sends_every_member_again(workspace, sent):
    workspace.write(profiles(10))
    workspace.run()
    before = len(sent())
    report = workspace.run(full_resync=True)
    assert (report.plan["update"], report.upserted) == (10, 10)
    assert all(payload[0] for _, payload in sent()[before:])  # sent whole, as joins


def test_changing_the_mapping_resends_everyone_whole(workspace, sent):
    workspace.write(profiles(6))
    workspace.run()
    before = len(sent())
    workspace.configure(batch_size=3)  # export settings changed
    report = workspace.run()
    assert report.plan["settings_changed"] is True
    assert report.upserted == 6
    assert all(payload[0] for _, payload in sent()[before:])
    assert workspace.run().upserted == 0


def test_a_failure_mid_run_keeps_what_was_acknowledged_and_the_next_run_sends_the_rest(workspace):
    workspace.write(profiles(50))
    MemoryDestination.fail_after_calls = 2
    user_stop = asyncio.Event()
    failed = workspace.run(stop=user_stop)
    assert failed.outcome == "failed" and "destination went away" in failed.message
    assert not user_stop.is_set()  # a failure ends this run, never the user's other exports
    acknowledged = workspace.acknowledged()
    assert 0 < len(acknowledged) < 50
    assert set(acknowledged) <= MemoryDestination.members  # nothing acknowledged the destination didn't get

    MemoryDestination.fail_after_calls = None
    resumed = workspace.run()
    assert resumed.outcome == "succeeded"
    assert resumed.upserted == 50 - len(acknowledged)
    assert MemoryDestination.members == {str(i) for i in range(1, 51)}


def test_a_stop_request_ends_the_run_after_batches_in_flight_as_interrupted(workspace):
    workspace.write(profiles(40))
    stop = asyncio.Event()
    original = MemoryDestination.upsert

    async def upsert_then_stop(self, records):
        stop.set()  # as Ctrl-C would, during the first batch
        return await original(self, records)

    MemoryDestination.upsert = upsert_then_stop
    try:
        report = workspace.run(stop=stop)
    finally:
        MemoryDestination.upsert = original
    assert report.outcome == "interrupted"
    assert "run the export again" in report.message
    assert 0 < report.upserted < 40
    assert len(workspace.acknowledged()) == report.upserted
    assert workspace.run().upserted == 40 - report.upserted


def test_safeguards_stop_a_mass_removal_before_sending(workspace):
    workspace.configure(extra="safeguards: {max_removed_fraction: 0.2}")
    workspace.write(profiles(20))
    workspace.run()
    calls = len(MemoryDestination.calls)
    workspace.write(profiles(10))
    report = workspace.run()
    assert report.outcome == "aborted"
    assert "would remove 10 of the 20 members" in report.message
    assert len(MemoryDestination.calls) == calls


def test_by_default_a_run_may_remove_at_most_half_of_the_members(workspace):
    workspace.write(profiles(20))
    workspace.run()
    calls = len(MemoryDestination.calls)
    workspace.write(profiles(10))  # half leave: allowed
    assert (workspace.run().removed, len(MemoryDestination.members)) == (10, 10)
    calls = len(MemoryDestination.calls)
    workspace.write(profiles(4))  # 6 of the 10 would leave: more than half
    report = workspace.run()
    assert report.outcome == "aborted"
    assert "would remove 6 of the 10 members the destination has (60%), more than the default removal " \
           "safeguard (50%)" in report.message
    assert "--allow-mass-removal" in report.message and "max_removed_fraction" in report.message
    assert len(MemoryDestination.calls) == calls and len(MemoryDestination.members) == 10


def test_allow_mass_removal_lets_one_run_through(workspace):
    workspace.write(profiles(10))
    workspace.run()
    workspace.write([])
    assert workspace.run().outcome == "aborted"
    report = workspace.run(allow_mass_removal=True)
    assert (report.outcome, report.removed) == ("succeeded", 10)
    assert MemoryDestination.members == set()


def test_a_null_max_removed_fraction_turns_the_removal_safeguard_off(workspace):
    workspace.configure(extra="safeguards: {max_removed_fraction: null}")
    workspace.write(profiles(10))
    workspace.run()
    workspace.write(profiles(1))
    assert (workspace.run().outcome, MemoryDestination.members) == ("succeeded", {"1"})


def test_safeguards_stop_an_export_over_max_profiles(workspace):
    workspace.configure(extra="safeguards: {max_profiles: 5}")
    workspace.write(profiles(6))
    report = workspace.run()
    assert report.outcome == "aborted" and "6 members, more than safeguards.max_profiles (5)" in report.message
    assert MemoryDestination.calls == []


def test_duplicate_and_null_keys_stop_the_run_before_sending(workspace):
    workspace.write(profiles(5) + [(2, "dup@example.com", "Dup", 2), (3, "dup3@example.com", "Dup", 3)])
    report = workspace.run()
    assert report.outcome == "failed"
    assert "key 'id' is not unique: 2 key(s) appear more than once, e.g. 2 (2 rows), 3 (2 rows)" in report.message
    assert MemoryDestination.calls == []

    workspace.write(profiles(3) + [(None, "nokey@example.com", "NoKey", 1)])
    report = workspace.run()
    assert report.outcome == "failed" and "1 row(s) have no 'id'" in report.message
    assert MemoryDestination.calls == []


def test_a_duplicate_key_is_found_when_the_segment_has_as_many_rows_as_state_has_members(workspace):
    # the unchanged plan skips the duplicate check only when the rows are state's members key for key
    workspace.write(profiles(5))
    assert workspace.run().outcome == "succeeded"
    calls = len(MemoryDestination.calls)
    workspace.write(profiles(4) + [(4, "user4@example.com", "Name4", 4)])
    report = workspace.run()
    assert report.outcome == "failed"
    assert "key 'id' is not unique: 1 key(s) appear more than once, e.g. 4 (2 rows)" in report.message
    assert len(MemoryDestination.calls) == calls


@pytest.mark.parametrize(("extra", "key"), [
    ([(2, "again@example.com", "Again", 2)], "2"),                               # a member's key, once more
    ([(9, "new@example.com", "New", 9), (9, "new2@example.com", "New", 9)], "9"),  # a new key, twice
], ids=["a key state knows", "a new key"])
def test_a_duplicate_key_stops_a_changed_plan_whether_state_knows_it_or_not(workspace, extra, key):
    workspace.write(profiles(5))
    assert workspace.run().outcome == "succeeded"
    calls = len(MemoryDestination.calls)
    workspace.write(profiles(5, changed={1: "Renamed"}) + extra)
    report = workspace.run()
    assert report.outcome == "failed"
    assert f"key 'id' is not unique: 1 key(s) appear more than once, e.g. {key} (2 rows)" in report.message
    assert len(MemoryDestination.calls) == calls


def test_a_key_in_two_segments_with_different_rows_is_an_error_naming_both(workspace):
    workspace.configure(segments="everyone, rich")
    workspace.write(profiles(60))
    assert workspace.run().outcome == "succeeded"  # same rows in both segments: a union by key
    assert len(MemoryDestination.members) == 60


def test_a_missing_column_names_the_segment_and_the_column(workspace):
    (workspace.root / "profiles.csv").write_text("id,email,name\n1,a@example.com,A\n")
    report = workspace.run()
    assert report.outcome == "failed"
    assert "segment 'everyone' has no column 'value'" in report.message


def test_a_second_run_of_the_same_export_is_refused_while_one_holds_the_lock(workspace):
    workspace.write(profiles(3))
    holder = workspace.state()
    with holder.export_lock("sync"):
        report = workspace.run()
    assert report.outcome == "failed" and "already running" in report.message
    assert MemoryDestination.calls == []


def test_plan_and_dry_run_tell_that_changed_settings_will_resend_everyone_without_writing(workspace):
    workspace.write(profiles(6))
    workspace.run()
    workspace.configure(batch_size=3)
    dry = workspace.run(dry_run=True)
    assert dry.plan["settings_changed"] is True and dry.plan["update"] == 6
    assert workspace.run(dry_run=True).plan["settings_changed"] is True  # the dry run recorded nothing
    assert workspace.run().upserted == 6
