"""The state contract's fixtures: one store on each backend (a SQLite file, a real PostgreSQL database),
so every concern's tests run against both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segship.engine.state import StateStore, open_state_at


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a store lives: a SQLite path, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(target: str | Path) -> Iterator[StateStore]:
    state = open_state_at(target)
    yield state
    state.close()


def keys(store: StateStore, export: str = "sync") -> list[str]:
    """The keys of the export's members, read through the contract."""
    return sorted(store.acknowledged(export).read_all().column("key").to_pylist())
