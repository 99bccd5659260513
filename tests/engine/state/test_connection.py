"""The store's connection (on both backends): statements on a thread of its own, driver errors as a
StateError naming where state is (never a password), a failed transaction leaving nothing."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest

from segship.engine.state import StateError

from .conftest import keys


def test_a_driver_error_is_a_state_error_naming_the_store_without_its_password(store, target):
    with pytest.raises(StateError) as raised:
        store.rows("SELECT * FROM no_such_table")
    message = str(raised.value)
    assert message.startswith(f"state {store.describe()}" if store.backend == "sqlite" else
                              f"state ({store.describe()})")
    assert "no_such_table" in message
    if store.backend == "postgresql":  # libpq's lines, joined into one, redacted
        assert "\n" not in message
        assert urlsplit(target).password not in message and str(target) not in message


def test_a_store_used_from_several_threads_at_once_runs_every_call(store):
    """Each call runs on the store's own thread, one at a time, whichever thread makes it."""
    failures: list[BaseException] = []

    def commit(export: str) -> None:
        try:
            for index in range(20):
                store.commit_upserts(export, [(f"k{index:02d}", index + 1, None, f"k{index:02d}")], [], [])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=commit, args=(f"export{number}",)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert all(keys(store, f"export{number}") == [f"k{index:02d}" for index in range(20)] for number in range(4))


def test_a_transaction_that_fails_leaves_nothing_of_it(store):
    store.commit_upserts("sync", [("k1", 1, None, "k1")], [], [])
    with pytest.raises(StateError):  # members, a stale identity, then a reject without a reason: all rolled back
        store.commit_upserts("sync", [("k2", 2, None, "k2")], [("k0", "old@example.com")],
                             [("k3", None)])  # type: ignore[list-item]
    assert keys(store) == ["k1"]
    assert (store.stale_identities("sync"), store.rejected_keys("sync")) == ({}, [])
    store.commit_upserts("sync", [("k2", 2, None, "k2")], [], [])  # the connection goes on
    assert keys(store) == ["k1", "k2"]
