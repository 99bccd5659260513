"""The plugin manager and the typed facade the rest of segship uses instead of pluggy.

Plugins are modules registered under the entry point group ``segship``. Built-in parts
(the duckdb, postgres and adbc sources; the slack, webhook and email notification channels) are
registered through the same hooks. ``SEGSHIP_LOAD_PLUGINS=a,b`` loads only the named entry
points (an empty value loads none). A plugin that fails to import, or whose hook raises, is
skipped with a warning naming it; the CLI still runs.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy
import structlog

from segship import __version__, hookspecs
from segship.destination import Destination
from segship.notifiers.contract import Notifier
from segship.source import Source

ENTRY_POINT_GROUP = "segship"
LOAD_PLUGINS_VARIABLE = "SEGSHIP_LOAD_PLUGINS"
BUILTIN_PLUGINS = ("segship.sources.duckdb", "segship.sources.postgres", "segship.sources.adbc", "segship.notifiers")

log = structlog.get_logger("segship.plugins")


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin module, for `segship plugins`."""

    name: str
    distribution: str
    version: str
    location: str
    destinations: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    notifiers: tuple[str, ...] = ()


@dataclass
class Plugins:
    """Everything the plugins registered. The only object the core uses to reach plugins."""

    manager: pluggy.PluginManager
    destinations: dict[str, type[Destination]] = field(default_factory=dict)
    sources: dict[str, type[Source]] = field(default_factory=dict)
    notifiers: dict[str, type[Notifier]] = field(default_factory=dict)
    infos: list[PluginInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def destination(self, type_name: str) -> type[Destination] | None:
        """The destination class for a connection ``type`` (its name or an alias)."""
        return self.destination_types().get(type_name)

    def destination_version(self, name: str) -> str:
        """The version of the distribution that registered the destination ``name`` ("?" if unknown)."""
        return next((info.version for info in self.infos if name in info.destinations), "?")

    def destination_types(self) -> dict[str, type[Destination]]:
        """Every accepted ``type`` value, aliases included."""
        types: dict[str, type[Destination]] = {}
        for cls in self.destinations.values():
            types[cls.name] = cls
            for alias in cls.aliases:
                types[alias] = cls
        return types

    def source(self, type_name: str) -> type[Source] | None:
        return self.sources.get(type_name)

    def notifier(self, type_name: str) -> type[Notifier] | None:
        return self.notifiers.get(type_name)

    def register_commands(self, cli: Any, sandbox: Any) -> None:
        for plugin in self.manager.get_plugins():
            self._isolated(plugin, "segship_register_commands", cli=cli, sandbox=sandbox)

    # observers: a failing observer is a plugin bug, not a reason to fail an export
    def export_started(self, export_name: str, plan: Any) -> None:
        self._notify("segship_export_started", export_name=export_name, plan=plan)

    def batch_done(self, export_name: str, batch: Any) -> None:
        self._notify("segship_batch_done", export_name=export_name, batch=batch)

    def export_finished(self, export_name: str, report: Any) -> None:
        self._notify("segship_export_finished", export_name=export_name, report=report)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        try:
            getattr(self.manager.hook, hook_name)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - observers must not break a run
            log.warning("plugin.observer_failed", hook=hook_name, error=f"{type(exc).__name__}: {exc}")

    def _isolated(self, plugin: object, hook_name: str, **kwargs: Any) -> bool:
        """Call one plugin's implementation of a hook; on failure warn and report False."""
        others = [p for p in self.manager.get_plugins() if p is not plugin]
        caller = self.manager.subset_hook_caller(hook_name, remove_plugins=others)
        try:
            caller(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is skipped, never fatal
            name = self.manager.get_name(plugin)
            self.warnings.append(f"plugin {name!r} failed in {hook_name}: {type(exc).__name__}: {exc}")
            return False
        return True


def _selected_entry_points() -> list[EntryPoint]:
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    wanted = os.environ.get(LOAD_PLUGINS_VARIABLE)
    if wanted is None:
        return found
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    return [ep for ep in found if ep.name in names]


def _register_callback(plugins: Plugins, kind: str, registry: dict[str, Any], base: type,
                       plugin_name: str, registered: list[str]) -> Callable[[type], None]:
    def register(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base) and isinstance(getattr(cls, "name", None), str)):
            plugins.warnings.append(f"plugin {plugin_name!r} registered {cls!r}, which is not a named {base.__name__}")
            return
        if cls.name in registry and registry[cls.name] is not cls:
            plugins.warnings.append(f"plugin {plugin_name!r}: {kind} {cls.name!r} is already registered; ignored")
            return
        registry[cls.name] = cls
        registered.append(cls.name)

    return register


def _unknown_hook(name: str) -> str:
    close = difflib.get_close_matches(name, [n for n in dir(hookspecs) if n.startswith("segship_")], n=1)
    return f"unknown hook {name}" + (f" (did you mean {close[0]}?)" if close else "")


def build_plugins() -> Plugins:
    """Create the plugin manager, load built-ins and entry points, collect registrations."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    modules: list[tuple[str, ModuleType, str, str]] = []
    for dotted in BUILTIN_PLUGINS:
        module = importlib.import_module(dotted)
        modules.append((dotted.rsplit(".", 1)[-1], module, "segship (built in)", __version__))
    for ep in _selected_entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - dlt-style: skip the plugin, keep the tool
            plugins.warnings.append(f"plugin {ep.name!r} ({dist}) failed to load and was skipped: "
                                    f"{type(exc).__name__}: {exc}")
            continue
        modules.append((ep.name, module, dist, version))
    for name, module, dist, version in modules:
        if manager.is_registered(module):
            continue
        try:
            manager.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - a malformed hookimpl skips the plugin
            plugins.warnings.append(f"plugin {name!r} ({dist}) was skipped: {type(exc).__name__}: {exc}")
            continue
        unknown = sorted(caller.name for caller in manager.get_hookcallers(module) or () if caller.spec is None)
        if unknown:
            # a misspelt hook would otherwise be ignored in silence, leaving the plugin half there
            manager.unregister(module)
            plugins.warnings.append(f"plugin {name!r} ({dist}) was skipped: it implements "
                                    + ", ".join(_unknown_hook(hook) for hook in unknown))
            continue
        destinations: list[str] = []
        sources: list[str] = []
        notifiers: list[str] = []
        plugins._isolated(module, "segship_register_destinations", register=_register_callback(
            plugins, "destination", plugins.destinations, Destination, name, destinations))
        plugins._isolated(module, "segship_register_sources", register=_register_callback(
            plugins, "source", plugins.sources, Source, name, sources))
        plugins._isolated(module, "segship_register_notifiers", register=_register_callback(
            plugins, "notifier", plugins.notifiers, Notifier, name, notifiers))
        location = getattr(module, "__file__", None) or "?"
        plugins.infos.append(PluginInfo(name, dist, version, location, tuple(destinations), tuple(sources),
                                        tuple(notifiers)))
    return plugins


@cache
def get_plugins() -> Plugins:
    """The process's plugins, loaded on first use."""
    plugins = build_plugins()
    for warning in plugins.warnings:
        log.warning("plugin.skipped", detail=warning)
    return plugins
