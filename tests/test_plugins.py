"""The plugin manager: loading entry points, SEGSHIP_LOAD_PLUGINS, and broken plugins skipped, never fatal.

Plugins here are modules put in ``sys.modules`` and announced by extra entry points of
the ``segship`` group, next to the real ones (Braze, Sendinblue) of the project's venv.
The installed-wheel view of the same behaviour is in test_packaging.py.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint
from typing import Any

import pytest
import structlog.testing

import segship.plugins as plugins_module
from segship import hookimpl
from segship.destination import Destination, Limits, Member, Record, RecordResult
from segship.plugins import build_plugins, get_plugins


class SpareDestination(Destination):
    name = "spare"
    aliases = ("spare-alias",)
    connection_schema: dict[str, Any] = {"type": "object"}
    export_settings_schema: dict[str, Any] = {"type": "object"}
    mapping_schema: dict[str, Any] = {"type": "object"}

    @property
    def limits(self) -> Limits:
        return Limits(upsert_batch_size=1, remove_batch_size=1)

    async def check_connection(self) -> str:
        return "spare"

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        return Record(key="k", identity="k", payload=None)

    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        return []

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        return []


def plugin_module(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


@pytest.fixture
def extra_plugins(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``extra_plugins(name=module_or_exception, ...)``: more ``segship`` entry points for this test.

    An exception instead of a module makes importing that entry point raise it.
    """
    monkeypatch.delenv("SEGSHIP_LOAD_PLUGINS", raising=False)
    extra: list[EntryPoint] = []
    real_entry_points = plugins_module.entry_points

    def entry_points(**selection):
        found = list(real_entry_points(**selection))
        return found + extra if selection.get("group") == "segship" else found

    monkeypatch.setattr(plugins_module, "entry_points", entry_points)

    def add(**modules: types.ModuleType | BaseException) -> None:
        for ep_name, module in modules.items():
            dotted = f"segship_test_plugin_{ep_name.replace('-', '_')}"
            if isinstance(module, BaseException):
                monkeypatch.setattr(EntryPoint, "load", _raising_load(EntryPoint.load, dotted, module))
            else:
                monkeypatch.setitem(sys.modules, dotted, module)
            extra.append(EntryPoint(name=ep_name, value=dotted, group="segship"))

    return add


def _raising_load(original, dotted: str, error: BaseException):
    def load(self):
        if self.value == dotted:
            raise error
        return original(self)

    return load


def names(plugins) -> list[str]:
    return [info.name for info in plugins.infos]


def test_the_project_plugins_and_the_builtin_source_load() -> None:
    plugins = build_plugins()
    assert names(plugins)[:3] == ["duckdb", "postgres", "adbc"]  # built-ins first, then entry points by name
    assert {"braze", "sendinblue"} <= set(names(plugins))
    assert set(plugins.destination_types()) >= {"braze", "sendinblue", "brevo"}
    assert plugins.warnings == []


def test_a_plugin_that_fails_to_import_is_skipped_and_named(extra_plugins) -> None:
    extra_plugins(**{"good": plugin_module("good", segship_register_destinations=lambda register:
                                           register(SpareDestination)),
                     "bad": RuntimeError("boom at import")})
    plugins = build_plugins()
    assert "spare" in plugins.destinations
    assert "bad" not in names(plugins)
    assert plugins.warnings == ["plugin 'bad' (?) failed to load and was skipped: RuntimeError: boom at import"]
    assert {"braze", "sendinblue"} <= set(names(plugins))


def test_a_plugin_with_a_missing_dependency_is_skipped(extra_plugins) -> None:
    extra_plugins(missing=ImportError("no module named hubspot_sdk"))
    plugins = build_plugins()
    assert "missing" not in names(plugins)
    [warning] = plugins.warnings
    assert warning.startswith("plugin 'missing' (?) failed to load and was skipped: ")


def test_a_registration_hook_that_raises_skips_only_that_plugin(extra_plugins) -> None:
    def explode(register):
        raise ValueError("bad registration")

    extra_plugins(broken=plugin_module("broken", segship_register_destinations=explode),
                  spare=plugin_module("spare", segship_register_destinations=lambda register:
                                      register(SpareDestination)))
    plugins = build_plugins()
    assert plugins.warnings == ["plugin 'broken' failed in segship_register_destinations: "
                                "ValueError: bad registration"]
    assert plugins.destination("spare") is SpareDestination
    assert plugins.destination("spare-alias") is SpareDestination  # aliases select the class too


def test_a_malformed_hookimpl_skips_the_plugin(extra_plugins) -> None:
    """A hookimpl whose arguments the hookspec doesn't have."""
    extra_plugins(wrong=plugin_module("wrong", segship_register_destinations=lambda register, extra: None))
    plugins = build_plugins()
    assert "wrong" not in names(plugins)
    [warning] = plugins.warnings
    assert warning.startswith("plugin 'wrong' (?) was skipped: PluginValidationError")


def test_a_misspelt_hook_skips_the_plugin_with_a_hint(extra_plugins) -> None:
    """pluggy alone would accept an unknown hook name and never call it."""
    extra_plugins(typo=plugin_module("typo", segship_register_destination=lambda register:
                                     register(SpareDestination)))
    plugins = build_plugins()
    assert "typo" not in names(plugins)
    assert plugins.warnings == ["plugin 'typo' (?) was skipped: it implements unknown hook "
                                "segship_register_destination (did you mean segship_register_destinations?)"]
    assert not plugins.manager.has_plugin("typo")


def test_registering_something_that_is_not_a_destination_is_a_warning(extra_plugins) -> None:
    extra_plugins(odd=plugin_module("odd", segship_register_destinations=lambda register: register(dict)))
    plugins = build_plugins()
    assert plugins.warnings == ["plugin 'odd' registered <class 'dict'>, which is not a named Destination"]


def test_a_destination_name_taken_twice_keeps_the_first(extra_plugins) -> None:
    class Impostor(SpareDestination):
        name = "braze"

    extra_plugins(zzz=plugin_module("zzz", segship_register_destinations=lambda register: register(Impostor)))
    plugins = build_plugins()
    assert plugins.destination("braze") is not Impostor
    assert "plugin 'zzz': destination 'braze' is already registered; ignored" in plugins.warnings


def test_a_broken_commands_hook_does_not_stop_the_cli(extra_plugins) -> None:
    import typer

    def explode(cli, sandbox):
        raise RuntimeError("no commands today")

    extra_plugins(noisy=plugin_module("noisy", segship_register_commands=explode))
    plugins = build_plugins()
    plugins.register_commands(typer.Typer(), typer.Typer())
    assert "plugin 'noisy' failed in segship_register_commands: RuntimeError: no commands today" in plugins.warnings


BUILTINS = ["duckdb", "postgres", "adbc", "notifiers"]  # the built-in sources and notification channels always load


@pytest.mark.parametrize(("value", "expected"), [
    ("braze", [*BUILTINS, "braze"]),
    ("sendinblue, braze", [*BUILTINS, "braze", "sendinblue"]),
    ("", BUILTINS),
    (" , ", BUILTINS),
    ("hubspot", BUILTINS),
])
def test_load_plugins_variable(value: str, expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSHIP_LOAD_PLUGINS", value)
    assert names(build_plugins()) == expected


def test_an_unselected_plugin_is_never_imported(extra_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    extra_plugins(bad=RuntimeError("must not be imported"))
    monkeypatch.setenv("SEGSHIP_LOAD_PLUGINS", "braze")
    plugins = build_plugins()
    assert plugins.warnings == []


def test_get_plugins_loads_once_and_logs_each_warning(extra_plugins) -> None:
    extra_plugins(bad=RuntimeError("boom"))
    get_plugins.cache_clear()
    try:
        with structlog.testing.capture_logs() as logs:
            first = get_plugins()
            assert get_plugins() is first
        assert [log["detail"] for log in logs if log["event"] == "plugin.skipped"] == [
            "plugin 'bad' (?) failed to load and was skipped: RuntimeError: boom"]
    finally:
        get_plugins.cache_clear()
