"""``state copy`` through the contract: every table out of one store and into another."""

from __future__ import annotations

from segship.destination import Member
from segship.engine.state import DroppedFields, OpenAlert, RecordedInstance, Rejected, TargetInstance, open_state_at

from .conftest import keys


def test_a_copy_between_backends_keeps_everything(tmp_path, postgres_url):
    source = open_state_at(tmp_path / "state.db")
    members = [(f"k{i:05d}", i * 7919 - 2**40, None if i % 3 else (b"%08d" % i), f"user{i}@example.com"
                if i % 2 else f"k{i:05d}") for i in range(120_000)]  # more rows than one copy page
    source.reconcile_settings("sync", "fp", ["a"])
    source.target_id("sync", {"list": "first"}, record=True)
    source.commit_upserts("sync", members[:10], [], [])
    assert source.target_id("sync", {"list": "second"}, record=True) == 2
    source.commit_upserts("sync", members, [("gone", "gone@example.com")],
                          [("bad", "refused"), Rejected("worse", "invalid email 'x'", -5, "fp")], target=2,
                          dropped=DroppedFields(fields=[("k00001", "phone", "invalid phone number 'n/a'")]))
    source.finish_run(source.start_run("sync", dry_run=False), "rejects", {"upserted": 3})
    alert = OpenAlert("drop", "2026-01-05T09:00:00+00:00", None, "members dropped", {"members": 10})
    source.open_alert("sync", alert)
    for there, back in ((open_state_at(postgres_url), open_state_at(tmp_path / "back.db")),):
        there.replace_all({table: source.read_table(table) for table in source.counts()})
        back.replace_all({table: there.read_table(table) for table in there.counts()})
        for copy in (there, back):
            assert copy.counts() == source.counts()
            assert copy.acknowledged("sync").read_all().sort_by("key").equals(
                source.acknowledged("sync").read_all().sort_by("key"))
            probe = [key for key, *_ in members[:10]]
            assert copy.details("sync", probe) == source.details("sync", probe)
            assert not copy.settings_changed("sync", "fp", ["a"])
            assert copy.runs() == source.runs() and copy.rejects("sync") == source.rejects("sync")
            assert copy.refusals("sync").sort_by("key").equals(source.refusals("sync").sort_by("key"))
            assert copy.dropped_fields_by_kind("sync") == source.dropped_fields_by_kind("sync")
            assert copy.stale_identities("sync") == {2: [Member("gone", "gone@example.com")]}
            assert copy.targets("sync") == {1: {"list": "first"}, 2: {"list": "second"}}
            assert copy.hash_version("sync") == source.hash_version("sync")
            assert copy.open_alerts("sync") == {"drop": alert}
            assert copy.start_run("sync", dry_run=False) > source.runs()[0]["id"]  # ids go on after the copy


def test_a_new_store_counts_no_row_in_any_table(store):
    assert set(store.counts().values()) == {0}
    assert [list(store.read_table(table)) for table in store.counts()] == [[]] * len(store.counts())


def test_a_copy_replaces_what_the_store_held_and_what_it_cached_of_it(store, tmp_path):
    source = open_state_at(tmp_path / "source.db")
    source.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    store.start_run("mine", dry_run=False)
    store.commit_upserts("mine", [("m1", 1, None, "m1")], [], [])  # its export id is cached, its digest deleted
    store.replace_all({table: source.read_table(table) for table in source.counts()})
    assert store.counts() == source.counts()
    assert (keys(store), keys(store, "mine")) == (["k1"], [])
    store.commit_upserts("mine", [("m2", 2, None, "m2")], [], [])  # made anew, not under the id it had
    assert (keys(store), keys(store, "mine")) == (["k1"], ["m2"])
    source.close()


def test_a_copy_keeps_where_each_target_is_and_the_instance_each_export_last_ran_against(tmp_path, postgres_url):
    source = open_state_at(tmp_path / "state.db")
    instance = {"destination": "sendinblue", "observed": {"organization_id": "5a5dbe11000000000000000a"}}
    source.target_id("sync", {"list_id": 3}, record=True)  # from before instances
    source.target_id("other", {"list_id": 3}, record=True, instance=instance, connection="brevo")
    source.record_instance("other", instance, "hmac-sha256:00ff:1234")
    there = open_state_at(postgres_url)
    there.replace_all({table: source.read_table(table) for table in source.counts()})
    for store in (source, there):
        assert store.target_instances("sync") == {1: TargetInstance(None, None)}
        assert store.target_instances("other") == {1: TargetInstance(instance, "brevo")}
        assert store.recorded_instance("other") == RecordedInstance(instance, "hmac-sha256:00ff:1234")
        store.close()
