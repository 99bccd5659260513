"""An export of one destination run in-process, as `segship export` and `segship plan` run it.

:class:`ExportHarness` writes a real config into a folder (a Parquet file as the source, one segment,
one connection, one export, SQLite state), loads it with the real loader and validator, and runs
the real engine: ``run()`` and ``plan()`` return the report and the plan as the JSON report and
``segship plan --format json`` write them. The destination class needs no entry point: the
harness registers it next to the installed plugins. Settings the destination's schema marks
``x-secret`` are written as ``${env:…}`` references (a literal secret doesn't validate) whose
values the harness sets while it runs; ``unresolved`` leaves them unset, as in CI without secrets::

    harness = ExportHarness(tmp_path, MyDestination, connection={"url": server.url, "api_key": "k"},
                            settings={"list": "a"}, mapping={"email": "email"}, key="id")
    harness.write_rows([{"id": "1", "email": "ada@example.com"}])
    assert harness.run()["outcome"] == "succeeded"

The ``export_harness`` fixture of :mod:`segship.testing.pytest_plugin` makes them in the test's folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from segship import event_loop
from segship.config import Config, load_config
from segship.destination import Destination
from segship.plugins import Plugins, build_plugins

EXPORT = "conformance"
CONNECTION = "destination"
SOURCE = "people"
SEGMENT = "members"
#: the prefix of the variables holding the secrets (``SEGSHIP_HARNESS_API_KEY``)
SECRET_VARIABLE_PREFIX = "SEGSHIP_HARNESS_"


def secret_paths(schema: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The settings a JSON Schema marks ``"x-secret": true``, at any depth of its ``properties``."""
    found: list[tuple[str, ...]] = []
    for name, subschema in schema.get("properties", {}).items():
        if not isinstance(subschema, Mapping):
            continue
        if subschema.get("x-secret"):
            found.append((*path, name))
        else:
            found.extend(secret_paths(subschema, (*path, name)))
    return found


class ExportHarness:
    """One export of ``destination`` (see the module's docstring). Its attributes (``destination``,
    ``connection``, ``settings``, ``mapping``, ``network``, ``safeguards``) may be changed between
    runs: the config is written again before each."""

    def __init__(self, directory: Path, destination: type[Destination], *, connection: Mapping[str, Any],
                 settings: Mapping[str, Any], mapping: Mapping[str, Any], key: str,
                 network: Mapping[str, Any] | None = None, safeguards: Mapping[str, Any] | None = None) -> None:
        self.directory = directory
        self.destination = destination
        self.connection = dict(connection)
        self.settings = dict(settings)
        self.mapping = dict(mapping)
        self.key = key
        #: the connection's ``network:`` block (``{"retries": {"max_attempts": 2}}``), if any
        self.network = dict(network) if network is not None else None
        #: the export's ``safeguards:``; by default none stops a test's run (removing every member is allowed)
        self.safeguards = dict(safeguards) if safeguards is not None else {"max_removed_fraction": None}
        self._schema: pa.Schema | None = None
        self._plugins: Plugins | None = None

    @property
    def plugins(self) -> Plugins:
        """The installed plugins, with ``destination`` (as it is now) registered under its name."""
        if self._plugins is None:
            self._plugins = build_plugins()
        self._plugins.destinations[self.destination.name] = self.destination
        return self._plugins

    def write_rows(self, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
        """Make ``rows`` the segment's rows (a Parquet file; types inferred unless ``schema``). An empty
        list keeps the columns of the rows written before."""
        if schema is None and not rows and self._schema is not None:
            schema = self._schema
        table = pa.Table.from_pylist(rows, schema=schema)
        self._schema = table.schema
        pq.write_table(table, self.directory / f"{SOURCE}.parquet")

    def run(self, *, dry_run: bool = False, full_resync: bool = False, unresolved: bool = False) -> dict[str, Any]:
        """Run the export now (``segship export``) and return its report as the JSON report has it."""
        from segship.engine.run import ExportRun, RunOptions
        from segship.engine.state import open_state

        config = self.config()
        with self._secrets(unresolved):
            state = open_state(config)
            try:
                run = ExportRun(config, EXPORT, self.plugins, state, RunOptions(dry_run=dry_run, full_resync=full_resync))
                return event_loop.run(run.run()).as_dict()
            finally:
                state.close()

    def plan(self) -> dict[str, Any]:
        """What a run would do (``segship plan``), as ``segship plan --format json`` has it; it resolves no secret."""
        from segship.engine.planning import plan_export
        from segship.engine.state import open_state

        config = self.config()
        state = open_state(config)
        try:
            return plan_export(config, EXPORT, self.plugins, state).as_dict()
        finally:
            state.close()

    def config(self) -> Config:
        """The config as written now (and written again from the harness's settings)."""
        # JSON is YAML too, and it never writes an anchor for a value met twice
        (self.directory / "segship.yaml").write_bytes(orjson.dumps(self._document(), option=orjson.OPT_INDENT_2))
        return load_config(self.directory / "segship.yaml", self.plugins)

    def secret_values(self) -> dict[str, str]:
        """The environment variables the config's secret references read, and their values."""
        values = {}
        for path in secret_paths(self.destination.connection_schema):
            value: Any = self.connection
            for name in path:
                value = value.get(name) if isinstance(value, Mapping) else None
            if value is not None:
                values[_variable(path)] = str(value)
        return values

    def _document(self) -> dict[str, Any]:
        settings = _with_references(self.connection, secret_paths(self.destination.connection_schema))
        connection = {"type": self.destination.name, "display_name": "The destination under test",
                      "data_privacy_consent": True, "settings": settings}
        if self.network is not None:
            connection["network"] = self.network
        return {
            "version": 1,
            "state": {"path": "state.db"},
            "sources": {SOURCE: {"type": "duckdb", "path": f"{SOURCE}.parquet"}},
            "segments": {SEGMENT: {"source": SOURCE, "key": self.key, "sql": f"SELECT * FROM {SOURCE}"}},
            "connections": {CONNECTION: connection},
            "exports": {EXPORT: {"display_name": "The export under test", "connection": CONNECTION,
                                 "segments": [SEGMENT], "settings": self.settings, "mapping": self.mapping,
                                 "safeguards": self.safeguards}},
        }

    @contextmanager
    def _secrets(self, unresolved: bool) -> Iterator[None]:
        values = {} if unresolved else self.secret_values()
        variables = {_variable(path) for path in secret_paths(self.destination.connection_schema)}
        before = {name: os.environ.get(name) for name in variables}
        for name in variables:
            os.environ.pop(name, None)
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _variable(path: tuple[str, ...]) -> str:
    return SECRET_VARIABLE_PREFIX + "_".join(path).upper()


def _with_references(settings: Mapping[str, Any], secrets: list[tuple[str, ...]],
                     path: tuple[str, ...] = ()) -> dict[str, Any]:
    """``settings`` with each secret replaced by its ``${env:…}`` reference."""
    written: dict[str, Any] = {}
    for name, value in settings.items():
        here = (*path, name)
        if here in secrets:
            written[name] = f"${{env:{_variable(here)}}}"
        elif isinstance(value, Mapping):
            written[name] = _with_references(value, secrets, here)
        else:
            written[name] = value
    return written
