"""One family of errors shown to users, each saying how a run it ends is reported."""

from __future__ import annotations

import pytest

from segship.config import ConfigError
from segship.destination import DestinationError, RowRejected
from segship.engine.safeguards import SafeguardError
from segship.engine.snapshot import PlanError
from segship.engine.state import StateError
from segship.errors import SegshipError
from segship.http import RetriesExhausted
from segship.secrets import SecretResolutionError
from segship.source import SourceError


@pytest.mark.parametrize(("error", "outcome"), [
    (ConfigError, "invalid"), (SecretResolutionError, "invalid"), (SafeguardError, "aborted"),
    (PlanError, "failed"), (SourceError, "failed"), (StateError, "failed"), (DestinationError, "failed"),
    (RetriesExhausted, "failed"),
])
def test_every_error_shown_to_users_is_a_segship_error(error: type[SegshipError], outcome: str) -> None:
    assert issubclass(error, SegshipError)
    assert error.outcome == outcome


def test_a_rejected_row_is_no_error_of_the_run() -> None:
    assert not issubclass(RowRejected, SegshipError)  # a per-row answer: the row becomes a reject
