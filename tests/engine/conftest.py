"""Engine fixtures: a real DuckDB source file, a real state file, and the in-process memory destination."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from segship.config import Config, load_config
from segship.engine.report import RunReport
from segship.engine.run import ExportRun, Progress, RunOptions
from segship.engine.state import StateStore, open_state
from segship.plugins import Plugins, build_plugins

from ..conftest import StateTarget
from . import memory_destination
from .memory_destination import MemoryDestination

#: The config's sources and segments: a CSV file of profiles (``write``), and two segments of it.
PROFILES = """
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  everyone: {source: crm, key: id, sql: "SELECT * FROM crm"}
  rich: {source: crm, key: id, sql: "SELECT * FROM crm WHERE value > 50"}"""
#: The same profiles as a table of a warehouse whose planner plans them (the ``warehouse`` variant).
WAREHOUSE_PROFILES = PROFILES.replace("{type: duckdb, path: profiles.csv}",
                                      '{type: postgres, url: "${env:WAREHOUSE_URL}", planner: {schema: segship}}')
#: The same table streamed to the local planner (the ``streamed`` variant).
STREAMED_PROFILES = WAREHOUSE_PROFILES.replace(", planner: {schema: segship}", "")
WAREHOUSE_TYPES = {"id": "bigint", "email": "text", "name": "text", "value": "bigint"}
CONFIG = """
version: 1
state: {state}{sources}
connections:
  mem: {{type: memory, display_name: Memory, data_privacy_consent: true, settings: {{api_key: "${{env:MEMORY_KEY}}"}}}}
exports:
  sync:
    display_name: Sync
    connection: mem
    segments: [{segments}]
    settings: {{batch_size: {batch_size}{settings}}}
    mapping: {{id: id, email: email, fields: {{name: name, value: value}}}}
    {extra}
"""


def write_profiles(path: Path, rows: list[tuple]) -> None:
    lines = ["id,email,name,value"] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def profiles(count: int, *, changed: dict[int, str] | None = None) -> list[tuple]:
    changed = changed or {}
    return [(i, f"user{i}@example.com", changed.get(i, f"Name{i}"), i) for i in range(1, count + 1)]


@pytest.fixture
def memory_plugins() -> Plugins:
    plugins = build_plugins()
    plugins.manager.register(memory_destination, name="memory")
    plugins.destinations[MemoryDestination.name] = MemoryDestination
    MemoryDestination.reset()
    return plugins


class Workspace:
    def __init__(self, root: Path, plugins: Plugins, state: StateTarget) -> None:
        self.root = root
        self.plugins = plugins
        self.state_target = state
        self.configure()

    def configure(self, segments: str = "everyone", batch_size: int = 10, extra: str = "", settings: str = "",
                  sources: str | None = None) -> None:
        if sources is None:
            sources = PROFILES if not self.state_target.warehouse else \
                WAREHOUSE_PROFILES if self.state_target.planned else STREAMED_PROFILES
        (self.root / "segship.yaml").write_text(CONFIG.format(
            state=self.state_target.yaml, segments=segments, batch_size=batch_size, extra=extra, settings=settings,
            sources=sources))

    def write(self, rows: list[tuple]) -> None:
        write_profiles(self.root / "profiles.csv", rows)
        if self.state_target.warehouse:
            self.state_target.load("crm", [dict(zip(WAREHOUSE_TYPES, row)) for row in rows], WAREHOUSE_TYPES)

    def config(self) -> Config:
        return load_config(self.root / "segship.yaml", self.plugins)

    def state(self) -> StateStore:
        return open_state(self.config())

    def acknowledged(self) -> list[str]:
        """Keys state says the destination acknowledged, read through the contract."""
        state = self.state()
        try:
            return state.acknowledged("sync").read_all().column("key").to_pylist()
        finally:
            state.close()

    def run(self, *, stop: asyncio.Event | None = None, progress: Progress | None = None,
            **options: bool) -> RunReport:
        state = self.state()
        try:
            run = ExportRun(self.config(), "sync", self.plugins, state, RunOptions(**options), progress, stop)
            return asyncio.run(run.run())
        finally:
            state.close()


@pytest.fixture
def workspace(tmp_path: Path, memory_plugins: Plugins, monkeypatch: pytest.MonkeyPatch,
              state_target: StateTarget) -> Workspace:
    """A config folder with a CSV source, run on each state backend in turn."""
    monkeypatch.setenv("MEMORY_KEY", "memory-secret-key-123")
    for name, value in state_target.env.items():
        monkeypatch.setenv(name, value)
    return Workspace(tmp_path, memory_plugins, state_target)


@pytest.fixture
def sent() -> Callable[[], list]:
    """The records the memory destination received, flattened, in order."""
    def records() -> list:
        return [item for kind, items in MemoryDestination.calls if kind == "upsert" for item in items]
    return records
