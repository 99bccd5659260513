"""Every hookspec is documented, called by the core, and exercised here (datasette's test idea).

A fake plugin (as in llm's conftest) is loaded through a real ``segship`` entry point
and implements every hook; each hook has an exerciser below that makes the core call
it and checks the fake saw the call. A new hookspec without an exerciser fails
``test_every_hook_is_exercised``.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import structlog
import structlog.testing
import typer
from typer.testing import CliRunner

from segship import hookimpl, hookspecs
from segship.destination import Destination, Limits, Member, Record, RecordResult
from segship.notifiers.contract import Alert, Notifier
from segship.plugins import Plugins, build_plugins
from segship.source import Source

CORE = Path(hookspecs.__file__).resolve().parent
HOOK_NAMES = sorted(name for name, value in vars(hookspecs).items()
                    if name.startswith("segship_") and inspect.isfunction(value))
FAKE_MODULE = "segship_fake_hooks_plugin"
HOOK_NAME = re.compile(r"segship_[a-z][a-z0-9_]*")


# -- the fake plugin ------------------------------------------------------------------------------


class FakeDestination(Destination):
    name = "fakedest"
    connection_schema = {"type": "object", "properties": {"token": {"type": "string", "x-secret": True}},
                         "additionalProperties": False}
    export_settings_schema = {"type": "object", "additionalProperties": False}
    mapping_schema = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"],
                      "additionalProperties": False}
    received: list[str] = []

    @property
    def limits(self) -> Limits:
        return Limits(upsert_batch_size=2, remove_batch_size=2, concurrency=1)

    async def check_connection(self) -> str:
        return "fake"

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        identity = str(row[self.export.mapping["id"]])
        return Record(key=identity, identity=identity, payload=None)

    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        type(self).received += [record.key for record in records]
        return [RecordResult(record.key) for record in records]

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        return [RecordResult(member.key) for member in members]


class FakeSource(Source):
    name = "fakesource"
    options_schema = {"type": "object", "properties": {}, "additionalProperties": False}

    def read(self, sql: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        table = pa.table({"id": ["1"]})
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())


class FakeNotifier(Notifier):
    name = "fakenotifier"
    settings_schema = {"type": "object", "properties": {"room": {"type": "string"}}, "additionalProperties": False}
    sent: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        type(self).sent.append(alert)


def _make_fake_module() -> types.ModuleType:
    """A plugin module with an implementation of every hook, recording its calls in ``calls``."""
    module = types.ModuleType(FAKE_MODULE)
    module.calls = []

    @hookimpl
    def segship_register_destinations(register):
        module.calls.append(("segship_register_destinations", {}))
        register(FakeDestination)

    @hookimpl
    def segship_register_sources(register):
        module.calls.append(("segship_register_sources", {}))
        register(FakeSource)

    @hookimpl
    def segship_register_notifiers(register):
        module.calls.append(("segship_register_notifiers", {}))
        register(FakeNotifier)

    @hookimpl
    def segship_register_commands(cli, sandbox):
        module.calls.append(("segship_register_commands", {}))

        @cli.command("fake-hello")
        def fake_hello() -> None:
            """Say hello from the fake plugin."""
            typer.echo("hello from the fake plugin")

        @sandbox.command("fake")
        def fake_sandbox() -> None:
            """A fake sandbox."""
            typer.echo("fake sandbox")

    @hookimpl
    def segship_export_started(export_name, plan):
        module.calls.append(("segship_export_started", {"export_name": export_name, "plan": plan}))

    @hookimpl
    def segship_batch_done(export_name, batch):
        module.calls.append(("segship_batch_done", {"export_name": export_name, "batch": batch}))

    @hookimpl
    def segship_export_finished(export_name, report):
        module.calls.append(("segship_export_finished", {"export_name": export_name, "report": report}))

    for function in (segship_register_destinations, segship_register_sources, segship_register_notifiers,
                     segship_register_commands, segship_export_started, segship_batch_done, segship_export_finished):
        setattr(module, function.__name__, function)
    return module


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The fake plugin, importable and announced by an extra ``segship`` entry point."""
    module = _make_fake_module()
    monkeypatch.setitem(sys.modules, FAKE_MODULE, module)
    import segship.plugins as plugins_module

    real_entry_points = plugins_module.entry_points

    def entry_points(**selection):
        found = list(real_entry_points(**selection))
        if selection.get("group") == "segship":
            found.append(EntryPoint(name="fake", value=FAKE_MODULE, group="segship"))
        return found

    monkeypatch.setattr(plugins_module, "entry_points", entry_points)
    monkeypatch.delenv("SEGSHIP_LOAD_PLUGINS", raising=False)
    FakeDestination.received = []
    return module


@pytest.fixture
def plugins(fake: types.ModuleType) -> Plugins:
    return build_plugins()


def _called(fake: types.ModuleType, hook: str) -> list[dict[str, Any]]:
    return [kwargs for name, kwargs in fake.calls if name == hook]


# -- the hookspecs themselves -------------------------------------------------------------------------


def test_there_are_hooks() -> None:
    assert HOOK_NAMES == sorted([
        "segship_register_destinations", "segship_register_sources", "segship_register_notifiers",
        "segship_register_commands", "segship_export_started", "segship_batch_done", "segship_export_finished",
    ])


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hookspec_is_a_documented_typed_hookspec(name: str) -> None:
    function = getattr(hookspecs, name)
    assert hasattr(function, "segship_spec"), f"{name} is not marked @hookspec"
    doc = inspect.getdoc(function)
    assert doc, f"{name} has no docstring"
    assert len(doc.splitlines()) == 1, f"{name}: hookspec docstrings are one line (DESIGN.md)"
    signature = inspect.signature(function)
    assert signature.parameters, f"{name} takes no arguments"
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, f"{name}({parameter.name}) is not typed"


def _hook_calls_in_core() -> dict[str, list[str]]:
    """Hook names the core calls: ``….hook.segship_x(…)`` or ``"segship_x"`` passed to a call.

    hookspecs.py declares the hooks and is left out; so are the built-in plugins, which
    implement hooks rather than call them.
    """
    found: dict[str, list[str]] = {}
    for file in sorted(CORE.rglob("*.py")):
        if file.name == "hookspecs.py":
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            names = []
            if isinstance(node.func, ast.Attribute) and HOOK_NAME.fullmatch(node.func.attr):
                names.append(node.func.attr)
            for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str) \
                        and HOOK_NAME.fullmatch(argument.value):
                    names.append(argument.value)
            for name in names:
                found.setdefault(name, []).append(f"{file.relative_to(CORE)}:{node.lineno}")
    return found


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_called_by_the_core(name: str) -> None:
    assert name in _hook_calls_in_core(), f"nothing in core/segship calls {name}"


def test_the_core_calls_no_undeclared_hook() -> None:
    assert set(_hook_calls_in_core()) <= set(HOOK_NAMES)


# -- each hook exercised -------------------------------------------------------------------------------


def exercise_register_destinations(fake: types.ModuleType, plugins: Plugins) -> None:
    assert len(_called(fake, "segship_register_destinations")) == 1
    assert plugins.destination("fakedest") is FakeDestination
    [info] = [info for info in plugins.infos if info.name == "fake"]
    assert info.destinations == ("fakedest",)


def exercise_register_sources(fake: types.ModuleType, plugins: Plugins) -> None:
    assert len(_called(fake, "segship_register_sources")) == 1
    assert plugins.source("fakesource") is FakeSource
    assert plugins.source("duckdb") is not None  # the built-in one, registered through the same hook
    [info] = [info for info in plugins.infos if info.name == "fake"]
    assert info.sources == ("fakesource",)


def exercise_register_notifiers(fake: types.ModuleType, plugins: Plugins) -> None:
    assert len(_called(fake, "segship_register_notifiers")) == 1
    assert plugins.notifier("fakenotifier") is FakeNotifier
    assert {"slack", "webhook", "email"} <= set(plugins.notifiers)  # the built-in ones, through the same hook
    [info] = [info for info in plugins.infos if info.name == "fake"]
    assert info.notifiers == ("fakenotifier",)


def exercise_register_commands(fake: types.ModuleType, plugins: Plugins) -> None:
    cli, sandbox = typer.Typer(), typer.Typer()
    cli.add_typer(sandbox, name="sandbox")
    plugins.register_commands(cli, sandbox)
    assert len(_called(fake, "segship_register_commands")) == 1
    runner = CliRunner()
    assert runner.invoke(cli, ["fake-hello"]).output == "hello from the fake plugin\n"
    assert runner.invoke(cli, ["sandbox", "fake"]).output == "fake sandbox\n"


def exercise_export_started(fake: types.ModuleType, plugins: Plugins) -> None:
    plan = object()
    plugins.export_started("vip", plan)
    assert _called(fake, "segship_export_started") == [{"export_name": "vip", "plan": plan}]


def exercise_batch_done(fake: types.ModuleType, plugins: Plugins) -> None:
    batch = object()
    plugins.batch_done("vip", batch)
    assert _called(fake, "segship_batch_done") == [{"export_name": "vip", "batch": batch}]


def exercise_export_finished(fake: types.ModuleType, plugins: Plugins) -> None:
    report = object()
    plugins.export_finished("vip", report)
    assert _called(fake, "segship_export_finished") == [{"export_name": "vip", "report": report}]


EXERCISERS: dict[str, Callable[[types.ModuleType, Plugins], None]] = {
    "segship_register_destinations": exercise_register_destinations,
    "segship_register_sources": exercise_register_sources,
    "segship_register_notifiers": exercise_register_notifiers,
    "segship_register_commands": exercise_register_commands,
    "segship_export_started": exercise_export_started,
    "segship_batch_done": exercise_batch_done,
    "segship_export_finished": exercise_export_finished,
}


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_exercised(name: str, fake: types.ModuleType, plugins: Plugins) -> None:
    assert name in EXERCISERS, f"no test exercises {name}: add an exerciser to tests/test_hookspecs.py"
    EXERCISERS[name](fake, plugins)


def test_an_observer_that_raises_does_not_break_the_caller(fake: types.ModuleType, plugins: Plugins) -> None:
    def explode(export_name, plan):
        raise ValueError("observer bug")

    broken = types.SimpleNamespace(segship_export_started=hookimpl(explode))
    plugins.manager.register(broken, name="broken-observer")
    with structlog.testing.capture_logs() as logs:
        plugins.export_started("vip", object())  # must not raise
    assert {"event": "plugin.observer_failed", "hook": "segship_export_started",
            "error": "ValueError: observer bug", "log_level": "warning"} in logs


# -- the engine fires the observer hooks --------------------------------------------------------------

ENGINE_CONFIG = """
version: 1
state: {path: state.db}
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  everyone: {source: crm, key: id, sql: SELECT * FROM crm}
connections:
  fake: {type: fakedest, display_name: Fake, data_privacy_consent: true, settings: {token: '${env:FAKE_TOKEN}'}}
exports:
  everyone-to-fake:
    display_name: Everyone
    connection: fake
    segments: [everyone]
    settings: {}
    mapping: {id: id}
"""


def _run_engine(plugins: Plugins, fake: types.ModuleType, tmp_path: Path, profiles_csv: str) -> Any:
    """One real ExportRun of ENGINE_CONFIG over ``profiles_csv``, the fake plugin's calls cleared first."""
    from segship.config import load_config
    from segship.engine.run import ExportRun, RunOptions
    from segship.engine.state import open_state

    (tmp_path / "segship.yaml").write_text(ENGINE_CONFIG)
    (tmp_path / "profiles.csv").write_text(profiles_csv)
    config = load_config(tmp_path / "segship.yaml", plugins)
    fake.calls.clear()
    state = open_state(config)
    try:
        report = asyncio.run(ExportRun(config, "everyone-to-fake", plugins, state, RunOptions()).run())
    finally:
        state.close()
    return report


def test_the_engine_fires_the_observer_hooks_in_order(fake: types.ModuleType, plugins: Plugins,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segship.engine.report import BatchReport, ExportPlan, RunReport

    monkeypatch.setenv("FAKE_TOKEN", "fake-token-value")
    report = _run_engine(plugins, fake, tmp_path, "id,email\n1,a@example.com\n2,b@example.com\n3,c@example.com\n")

    assert report.outcome == "succeeded", report
    assert sorted(FakeDestination.received) == ["1", "2", "3"]
    observed = [(name, kwargs) for name, kwargs in fake.calls if name in EXERCISERS
                and name.startswith(("segship_export", "segship_batch"))]
    names = [name for name, _ in observed]
    assert names == ["segship_export_started", "segship_batch_done", "segship_batch_done",
                     "segship_export_finished"], names  # 3 members in batches of 2
    assert all(kwargs["export_name"] == "everyone-to-fake" for _, kwargs in observed)
    started, first, second, finished = (kwargs for _, kwargs in observed)
    assert isinstance(started["plan"], ExportPlan) and started["plan"].add == 3
    assert isinstance(first["batch"], BatchReport)
    assert (first["batch"].kind, first["batch"].records, first["batch"].acknowledged) == ("upsert", 2, 2)
    assert (second["batch"].records, second["batch"].acknowledged) == (1, 1)
    assert finished["report"] is report and isinstance(report, RunReport)


def test_the_engine_reports_a_failed_run_to_export_finished(fake: types.ModuleType, plugins: Plugins,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export_finished is called whatever the outcome; export_started only once the run may send."""
    monkeypatch.setenv("FAKE_TOKEN", "fake-token-value")
    report = _run_engine(plugins, fake, tmp_path, "id,email\n1,a@example.com\n1,b@example.com\n")  # duplicate key

    assert report.outcome != "succeeded"
    names = [name for name, _ in fake.calls]
    assert "segship_export_started" not in names
    assert "segship_batch_done" not in names
    assert _called(fake, "segship_export_finished") == [{"export_name": "everyone-to-fake", "report": report}]
