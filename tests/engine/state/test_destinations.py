"""The destination each export was last sent through, as ``segship retire`` reads it (on both backends)."""

from __future__ import annotations

from segship.engine.state import RecordedDestination, open_state_at

BREVO = RecordedDestination("brevo-prod", "sendinblue", {"list_id": 7, "attribute_names": {"phone": "SMS"}},
                            {"email": "email", "first_name": "first"})


def test_the_last_destination_is_kept_per_export_and_survives_a_reopening(store, target):
    assert store.recorded_destination("sync") is None
    store.record_destination("sync", BREVO)
    assert store.recorded_destination("sync") == BREVO
    moved = BREVO._replace(connection="brevo-eu", settings={"list_id": 9})
    store.record_destination("sync", moved)
    store.record_destination("other", BREVO)
    reopened = open_state_at(target)
    try:
        assert reopened.recorded_destination("sync") == moved
        assert reopened.recorded_destination("other") == BREVO
    finally:
        reopened.close()


def test_forget_drops_it_with_the_rest(store):
    store.record_destination("sync", BREVO)
    assert store.forget("sync") is True
    assert store.recorded_destination("sync") is None
