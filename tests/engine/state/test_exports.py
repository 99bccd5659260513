"""Export ids, cached by the store: never kept for an export that was not created, and looked up
again when a run starts (on both backends)."""

from __future__ import annotations

import pytest

from segship.engine.state import StateError, open_state_at

from .conftest import keys


def test_an_export_created_in_a_transaction_that_rolled_back_gives_its_id_to_no_other(store, target):
    with pytest.raises(StateError):  # the export is created, then its commit fails: neither is kept
        store.commit_upserts("first", [("k1", 1, None, "k1"), (None, 1, None, "x")], [], [])
    store.commit_upserts("second", [("k2", 2, None, "k2")], [], [])
    store.commit_upserts("first", [("k3", 3, None, "k3")], [], [])
    assert (keys(store, "first"), keys(store, "second")) == (["k3"], ["k2"])
    reopened = open_state_at(target)  # as the next run finds them
    assert (keys(reopened, "first"), keys(reopened, "second")) == (["k3"], ["k2"])
    reopened.close()


def test_an_export_forgotten_and_made_anew_elsewhere_is_looked_up_again_when_a_run_starts(store, target):
    store.commit_upserts("keep", [("a", 1, None, "a")], [], [])
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    other = open_state_at(target)  # another machine forgets the export, and a run there makes it anew
    try:
        assert other.forget("sync")
        other.commit_upserts("other", [("o", 1, None, "o")], [], [])
        other.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])
    finally:
        other.close()
    store.start_run("sync", dry_run=False)
    store.commit_upserts("sync", [("k3", 3, None, "k3")], [], [])
    reopened = open_state_at(target)
    try:
        assert keys(reopened) == ["k2", "k3"]
        assert (keys(reopened, "keep"), keys(reopened, "other")) == (["a"], ["o"])
    finally:
        reopened.close()
