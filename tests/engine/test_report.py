"""The run report's grouping of reject reasons: by kind, without the rows' values."""

from __future__ import annotations

import pytest

from segship.engine.report import reason_kind


@pytest.mark.parametrize(("reason", "kind"), [
    ("invalid email 'ann@example'", "invalid email '…'"),
    ('field "phone" is "+33 6 12"', "field '…' is '…'"),
    ("refused by the destination", "refused by the destination"),
    ("empty value ''", "empty value '…'"),
    ("unbalanced 'quote", "unbalanced 'quote"),
])
def test_a_reason_kind_hides_every_quoted_value(reason, kind):
    assert reason_kind(reason) == kind


def test_reasons_that_differ_only_in_their_values_are_one_kind():
    assert reason_kind("invalid email 'a@b'") == reason_kind("invalid email 'someone.else@x'")
