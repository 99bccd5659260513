"""Keys whose destination identity collides: found in bulk in the plan, stopped or left out.

The memory destination is given an identity rule here (its ``email`` column, compared as Brevo
compares emails), so the engine's check runs exactly as for a plugin that declares one.
"""

from __future__ import annotations

import dataclasses

import pytest

from segship.destination import IdentityRule
from segship.engine import warehouse_members
from segship.engine.snapshot import WHITESPACE, normalised_identity

from .conftest import profiles
from .memory_destination import MemoryDestination


@pytest.fixture
def emails_compared_case_insensitively(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MemoryDestination, "identity_rule", classmethod(
        lambda cls, mapping: IdentityRule(mapping["email"], "lower", r"[^@\s]+@[^@\s]+\.[a-z]+", "email")))


@pytest.mark.parametrize("value, exact, trimmed, lowered", [
    ("Ann@Example.com", "Ann@Example.com", "Ann@Example.com", "ann@example.com"),
    (" \t\u3000Ann@Example.com\u2029\x85 ", " \t\u3000Ann@Example.com\u2029\x85 ", "Ann@Example.com",
     "ann@example.com"),
    ("   ", "   ", None, None),
    ("", None, None, None),
    (None, None, None, None),
])
def test_an_identity_is_normalised_as_python_strips_and_lowers_it(value, exact, trimmed, lowered):
    assert normalised_identity(IdentityRule("c", "exact"), value) == exact
    assert normalised_identity(IdentityRule("c", "trim"), value) == trimmed
    assert normalised_identity(IdentityRule("c", "lower"), value) == lowered
    if value is not None:
        assert value.strip() == (trimmed or "")  # the same whitespace as str.strip()
    assert all(character.isspace() for character in WHITESPACE)


def test_an_identity_the_pattern_refuses_is_none():
    rule = IdentityRule("c", "lower", r"[a-z]+@[a-z]+\.[a-z]+")
    assert normalised_identity(rule, " N/A ") is None and normalised_identity(rule, "A@B.CO") == "a@b.co"
    assert normalised_identity(IdentityRule("c", "trim"), 42) == "42"


def test_two_keys_with_one_identity_stop_the_plan_naming_both_keys_and_the_identity(
        workspace, sent, emails_compared_case_insensitively):
    rows = profiles(6)
    rows[3] = (4, " USER2@example.COM", "Name4", 4)
    rows[5] = (6, "n/a", "Name6", 6)  # refused by the mapping, as is 7's: no conflict between them
    workspace.write([*rows, (7, "n/a", "Name7", 7)])
    report = workspace.run()
    assert report.outcome == "failed"
    assert "export 'sync': 1 email(s) are shared by more than one key, e.g. 'user2@example.com' (keys '2', '4')" \
        in report.message
    assert "compared case-insensitively" in report.message and "identity_conflicts: first" in report.message
    assert "nothing was sent" in report.message and "segship.yaml:" in report.message
    assert sent() == [] and workspace.acknowledged() == []


def test_a_conflict_appearing_after_a_clean_run_stops_the_next_one(workspace, sent, emails_compared_case_insensitively):
    workspace.write(profiles(5))
    assert workspace.run().outcome == "succeeded"
    assert workspace.run().plan["unchanged"] == 5
    rows = profiles(5)
    rows[4] = (5, "user1@example.com", "Name5", 5)
    workspace.write(rows)
    report = workspace.run()
    assert report.outcome == "failed" and "'user1@example.com' (keys '1', '5')" in report.message


def test_a_new_key_with_the_identity_of_a_key_state_holds_stops_the_plan(workspace, monkeypatch):
    """An identity made of the key (as Braze's external_id): only a key state doesn't hold can bring a
    shared one, and it is looked for among every member's."""
    monkeypatch.setattr(MemoryDestination, "identity_rule", classmethod(
        lambda cls, mapping: IdentityRule(mapping["id"], "lower", None, "id")))
    rows = [("a1", "a@example.com", "Ann", 1), ("b2", "b@example.com", "Bob", 2)]
    workspace.write(rows)
    assert workspace.run().outcome == "succeeded"
    rows = [(key, email, name + "!", value) for key, email, name, value in rows]
    workspace.write(rows)  # changed, not new
    assert workspace.run().plan["update"] == 2
    workspace.write([*rows, ("A1", "c@example.com", "Cy", 3)])  # a1 and b2 unchanged
    report = workspace.run()
    assert report.outcome == "failed" and "'a1' (keys 'A1', 'a1')" in report.message


def test_one_key_in_two_segments_and_a_duplicated_key_are_no_identity_conflict(
        workspace, emails_compared_case_insensitively):
    workspace.configure(segments="everyone, rich")
    workspace.write(profiles(60))
    assert workspace.run().outcome == "succeeded"
    workspace.configure()
    workspace.write([*profiles(3), (3, "user3@example.com", "Name3", 3)])
    report = workspace.run()
    assert report.outcome == "failed" and "is not unique" in report.message


def test_first_sends_the_lowest_key_and_leaves_the_others_out_until_it_leaves(
        workspace, sent, emails_compared_case_insensitively):
    workspace.configure(extra="identity_conflicts: first")
    rows = profiles(4)
    rows[1] = (2, "USER3@example.com", "Name2", 2)  # 2 and 3 share an email; 2 is the lower key
    workspace.write(rows)
    report = workspace.run()
    assert report.outcome == "succeeded", report.message
    assert (report.plan["add"], report.plan["left_out"], report.plan["examples"]["left out"]) == (3, 1, ["3"])
    assert sorted(identity for identity, _ in sent()) == ["1", "2", "4"]
    assert sorted(workspace.acknowledged()) == ["1", "2", "4"]
    again = workspace.run()
    assert (again.outcome, again.plan["unchanged"], again.plan["left_out"], again.upserted) == ("succeeded", 3, 1, 0)

    workspace.write([row for row in rows if row[0] != 2])  # the winner leaves: the other key is sent
    report = workspace.run()
    assert (report.plan["add"], report.plan["remove"], report.plan["left_out"]) == (1, 1, 0)
    assert sorted(workspace.acknowledged()) == ["1", "3", "4"]


def test_going_back_from_first_to_error_stops_on_the_conflict_left_out(workspace, emails_compared_case_insensitively):
    workspace.configure(extra="identity_conflicts: first")
    rows = profiles(3)
    rows[2] = (3, "user1@example.com", "Name3", 3)
    workspace.write(rows)
    assert workspace.run().outcome == "succeeded"
    workspace.configure()
    report = workspace.run()
    assert report.outcome == "failed" and "(keys '1', '3')" in report.message


@pytest.mark.parametrize("state_target", ["warehouse"], indirect=True)
def test_many_planned_identities_are_looked_up_in_the_warehouse_alike(workspace, sent, emails_compared_case_insensitively,
                                                                       monkeypatch):
    """Past ``IDENTITIES_WRITTEN_OUT`` planned rows (a first run), the warehouse planner looks their identities up
    in the plan's table instead of writing them into its statement: the same conflicts are found."""
    monkeypatch.setattr(warehouse_members, "IDENTITIES_WRITTEN_OUT", 1)
    mapped = MemoryDestination.map

    def acknowledged_by_email(self, row, changed_columns=None):  # as a destination declaring the rule does
        record = mapped(self, row, changed_columns)
        rule = self.identity_rule(self.export.mapping)
        return dataclasses.replace(record, identity=normalised_identity(rule, row[rule.column]))

    monkeypatch.setattr(MemoryDestination, "map", acknowledged_by_email)
    rows = profiles(6)
    rows[3] = (4, " USER2@example.COM", "Name4", 4)
    workspace.write(rows)
    report = workspace.run()
    assert report.outcome == "failed" and "'user2@example.com' (keys '2', '4')" in report.message
    assert sent() == []
    workspace.write(profiles(5))
    assert workspace.run().outcome == "succeeded"
    rows = profiles(7)
    rows[4] = (5, "user1@example.com", "Name5", 5)  # a changed row, and a new one, on unchanged members' emails
    rows[6] = (7, "USER3@example.com", "Name7", 7)
    workspace.write(rows)
    report = workspace.run()
    assert report.outcome == "failed"
    assert "'user1@example.com' (keys '1', '5')" in report.message and "'user3@example.com'" in report.message
