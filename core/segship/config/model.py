"""The validated config as typed objects. Built only from a config that passed validation."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from segship.config.loader import LoadedConfig
from segship.destination import ExportContext
from segship.network import NetworkSettings, resolve_network
from segship.notifiers.contract import EVENTS
from segship.secrets import UnresolvedSecret, has_reference, resolve
from segship.settings import is_secret
from segship.source import SourceContext

DEFAULT_STATE_PATH = ".segship/state.db"
#: The variable a config that sets no ``state`` takes its PostgreSQL URL from when it is set (the CI
#: workflow `segship init` writes sets it from a secret); else such a config uses the SQLite file.
STATE_URL_VARIABLE = "SEGSHIP_STATE_URL"
#: The share of an export's acknowledged members a run may remove when the export doesn't say:
#: an emptied upstream table must not empty the list a campaign is about to use.
DEFAULT_MAX_REMOVED_FRACTION = 0.5
#: the keys of a ``notifications:`` entry that are segship's, not the channel's settings
NOTIFICATION_KEYS = ("type", "exports", "events")
DURATION = re.compile(r"([1-9][0-9]*)([smhd])")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def resolved_references(value: Any, path: tuple[str | int, ...], base_dir: Path, locations: Mapping[tuple, str],
                        default_where: str, is_secret: Callable[[tuple], bool]) -> Any:
    """``value`` with every ``${env:…}``/``${file:…}`` in it (and in the mappings and lists it holds)
    resolved; raises SecretResolutionError naming ``locations[path]`` (or ``default_where``).

    Resolved secrets (``is_secret(path)``) are registered for redaction.
    """
    if isinstance(value, dict):
        return {key: resolved_references(item, (*path, key), base_dir, locations, default_where, is_secret)
                for key, item in value.items()}
    if isinstance(value, list):
        return [resolved_references(item, (*path, index), base_dir, locations, default_where, is_secret)
                for index, item in enumerate(value)]
    if not has_reference(value):
        return value
    return resolve(value, base_dir, where=locations.get(path, default_where), secret=is_secret(path))


def unresolved_references(value: Any, path: tuple[str | int, ...] = ()) -> Any:
    """``value`` with every string holding a ``${env:…}``/``${file:…}`` reference (in the mappings and
    lists it holds too) replaced by an :class:`UnresolvedSecret` naming its place: what a command
    that resolves nothing (``plan``, ``--dry-run``) hands a destination."""
    if isinstance(value, dict):
        return {key: unresolved_references(item, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [unresolved_references(item, (*path, index)) for index, item in enumerate(value)]
    return UnresolvedSecret(".".join(map(str, path))) if has_reference(value) else value


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str
    options: dict[str, Any]
    base_dir: Path
    #: options the source plugin marks ``"x-secret": true`` (a mapping's every value is a secret)
    secret_fields: tuple[str, ...] = ()
    #: file:line:col of each option's value (and of each value in a mapping), for resolution errors
    option_locations: dict[tuple[str, ...], str] = field(default_factory=dict)

    def context(self) -> SourceContext:
        """What the source plugin gets, ``${env:…}``/``${file:…}`` resolved; raises SecretResolutionError.

        Called only when a run or `segship sources test` opens the source, so validation
        works without secrets. Resolved secrets are registered for redaction.
        """

        options = resolved_references(self.options, (), self.base_dir, self.option_locations, self.name,
                                      lambda path: path[0] in self.secret_fields)
        return SourceContext(self.name, options, self.base_dir)


@dataclass(frozen=True)
class SegmentConfig:
    name: str
    source: str
    key: str
    sql: str


@dataclass(frozen=True)
class ConnectionConfig:
    name: str
    type: str
    display_name: str
    usable_by: tuple[str, ...]
    data_privacy_consent: bool
    settings: dict[str, Any]
    #: settings the plugin marks ``"x-secret": true``, at any depth (``segship.settings.secret_paths``)
    secret_paths: tuple[tuple[str, ...], ...]
    base_dir: Path
    #: file:line:col of each setting's value (and of each value inside one), for resolution errors
    setting_locations: dict[tuple[str | int, ...], str] = field(default_factory=dict)
    #: the ``network:`` block as written (proxy, tls, timeouts, retries), and where each value is
    network: dict[str, Any] = field(default_factory=dict)
    network_locations: dict[tuple[str, ...], str] = field(default_factory=dict)

    def resolved_network(self) -> NetworkSettings:
        """The ``network:`` block resolved (references read, certificates loaded); raises
        SecretResolutionError. Called, as ``resolved_settings``, only when a run needs it."""
        return resolve_network(self.network, self.base_dir, self.network_locations,
                               f"connections.{self.name}.network")

    def is_secret(self, path: tuple[str | int, ...]) -> bool:
        """Whether the setting at ``path`` is (or lies in) one the plugin marks ``x-secret``."""
        return is_secret(path, self.secret_paths)

    def resolved_settings(self) -> dict[str, Any]:
        """Settings with ``${env:…}``/``${file:…}`` resolved, at any depth; raises SecretResolutionError.

        Called only when a run or a connection test needs the values, so validation
        works in CI without secrets. Resolved secrets are registered for redaction.
        """
        return resolved_references(self.settings, (), self.base_dir, self.setting_locations, self.name,
                                   self.is_secret)

    def unresolved_settings(self) -> dict[str, Any]:
        """Settings as ``plan`` and ``--dry-run`` hand them to a destination: each reference an
        :class:`~segship.secrets.UnresolvedSecret` (they resolve nothing and send nothing)."""
        return unresolved_references(self.settings)

    def usable_by_role(self, role: str) -> bool:
        """Admins may use every connection; contributors only those that list them."""
        return role != "contributor" or "contributors" in self.usable_by


@dataclass(frozen=True)
class Safeguards:
    max_profiles: int | None = None
    #: None (``null`` in YAML) turns the removal check off; unset, the default applies
    max_removed_fraction: float | None = DEFAULT_MAX_REMOVED_FRACTION
    max_removed_fraction_set: bool = False  # the export wrote max_removed_fraction (a value or null)

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> Safeguards:
        return cls(**entry, max_removed_fraction_set="max_removed_fraction" in entry)


@dataclass(frozen=True)
class AlertThresholds:
    """An export's ``alerts:``: when its runs raise the ``rejects``, ``drop`` and ``stale`` alerts."""

    max_rejected_fraction: float = 0.05   # of the rows a run sent
    max_dropped_fraction: float = 0.2     # of the members at the last successful run
    stale_after: timedelta = timedelta(hours=6)  # without a success after a scheduled run came due

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> AlertThresholds:
        values = dict(entry)
        if "stale_after" in values:
            values["stale_after"] = parse_duration(values["stale_after"])
        return cls(**values)


def parse_duration(text: str) -> timedelta:
    """``90m``, ``6h``, ``2d`` (the schema checked the form) as a timedelta."""
    match = DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class ExportConfig:
    name: str
    display_name: str
    connection: str
    segments: tuple[str, ...]
    settings: dict[str, Any]
    mapping: dict[str, Any]
    schedule: str | None
    safeguards: Safeguards
    alerts: AlertThresholds = AlertThresholds()
    #: "error": keys sharing a destination identity stop the plan; "first": the lowest key is sent
    identity_conflicts: str = "error"
    #: "drop": an invalid field that is not the identity is left out, the member sent; "reject": the row is refused
    on_invalid_field: str = "drop"

    def context(self, settings: Mapping[str, Any] | None = None) -> ExportContext:
        """What a destination serving this export gets; ``settings`` in place of the export's own
        (those of an earlier target, whose members are removed from there)."""
        return ExportContext(self.name, self.settings if settings is None else settings, self.mapping,
                             self.segments)


@dataclass(frozen=True)
class SyncLogConfig:
    """``sync_log:``: how long state keeps the member-level sync log (0: no log is kept)."""

    retention_days: int = 30


@dataclass(frozen=True)
class NotificationConfig:
    """A ``notifications:`` entry: a channel, which exports and events it hears of, and its settings."""

    name: str
    type: str
    exports: tuple[str, ...] | None  # None: every export
    events: tuple[str, ...]
    settings: dict[str, Any]         # the channel's own keys, references unresolved
    base_dir: Path
    #: settings the notifier marks ``"x-secret": true``, at any depth (``("smtp", "password")``)
    secret_paths: tuple[tuple[str, ...], ...] = ()
    #: file:line:col of each setting's value (and of each value in a mapping), for resolution errors
    setting_locations: dict[tuple[str, ...], str] = field(default_factory=dict)

    def hears(self, export: str, event: str) -> bool:
        return (self.exports is None or export in self.exports) and event in self.events

    def resolved_settings(self) -> dict[str, Any]:
        """The settings with ``${env:…}``/``${file:…}`` resolved; raises SecretResolutionError.

        Called only when an alert is sent, so validation works without secrets. Resolved secrets
        are registered for redaction.
        """
        return resolved_references(self.settings, (), self.base_dir, self.setting_locations, self.name,
                                   lambda path: is_secret(path, self.secret_paths))


@dataclass
class Config:
    path: Path
    state_path: Path
    sources: dict[str, SourceConfig]
    segments: dict[str, SegmentConfig]
    connections: dict[str, ConnectionConfig]
    exports: dict[str, ExportConfig]
    loaded: LoadedConfig
    #: ``state.url``: a ${env:…}/${file:…} reference to a PostgreSQL URL, resolved when state is opened
    state_url: str | None = None
    notifications: dict[str, NotificationConfig] = field(default_factory=dict)
    sync_log: SyncLogConfig = SyncLogConfig()

    def where(self, *path: str | int) -> str:
        """file:line:col of a config node, for messages."""
        return str(self.loaded.location(path))

    def state_url_reference(self) -> str | None:
        """The reference to the PostgreSQL state's URL, or None for the SQLite file (``state_path``):
        ``state.url``; a config that sets no ``state`` takes ``${env:SEGSHIP_STATE_URL}`` when that
        variable is set (even empty: resolving it then says so, rather than a CI run, whose secret is
        missing, falling back to a runner's empty disk). Its value is not read here."""
        if "state" in self.loaded.data or STATE_URL_VARIABLE not in os.environ:
            return self.state_url
        return f"${{env:{STATE_URL_VARIABLE}}}"


def build_config(path: Path, loaded: LoadedConfig, secret_paths_by_type: dict[str, list[tuple[str, ...]]],
                 source_secret_fields_by_type: dict[str, list[str]] | None = None,
                 notifier_secret_paths_by_type: dict[str, list[tuple[str, ...]]] | None = None) -> Config:
    data = loaded.data

    def folder(*entry: str) -> Path:
        return loaded.file_of(entry).resolve().parent

    state_url = data.get("state", {}).get("url")
    state_path = Path(data.get("state", {}).get("path", DEFAULT_STATE_PATH))
    if not state_path.is_absolute():
        state_path = (folder("state") if "state" in data else _config_root(path)) / state_path
    sources = {
        name: SourceConfig(name, entry["type"], {k: v for k, v in entry.items() if k != "type"},
                           folder("sources", name),
                           tuple((source_secret_fields_by_type or {}).get(entry["type"], ())),
                           _value_locations(loaded, ("sources", name), entry))
        for name, entry in data.get("sources", {}).items()
    }
    segments = {
        name: SegmentConfig(name, entry["source"], entry["key"], entry["sql"])
        for name, entry in data.get("segments", {}).items()
    }
    connections = {
        name: ConnectionConfig(
            name=name, type=entry["type"], display_name=entry["display_name"],
            usable_by=tuple(entry.get("usable_by", ["admins"])),
            data_privacy_consent=entry.get("data_privacy_consent") is True,
            settings=dict(entry["settings"]),
            secret_paths=tuple(secret_paths_by_type.get(entry["type"], ())),
            base_dir=folder("connections", name),
            setting_locations=_value_locations(loaded, ("connections", name, "settings"), entry["settings"]),
            network=dict(entry.get("network") or {}),
            network_locations=_value_locations(loaded, ("connections", name, "network"), entry.get("network") or {}),
        )
        for name, entry in data.get("connections", {}).items()
    }
    exports = {
        name: ExportConfig(
            name=name, display_name=entry["display_name"], connection=entry["connection"],
            segments=tuple(entry["segments"]), settings=dict(entry["settings"]), mapping=dict(entry["mapping"]),
            schedule=entry.get("schedule"), safeguards=Safeguards.from_config(entry.get("safeguards", {})),
            alerts=AlertThresholds.from_config(entry.get("alerts", {})),
            identity_conflicts=entry.get("identity_conflicts", "error"),
            on_invalid_field=entry.get("on_invalid_field", "drop"),
        )
        for name, entry in data.get("exports", {}).items()
    }
    notifications = {
        name: NotificationConfig(
            name=name, type=entry["type"],
            exports=tuple(entry["exports"]) if "exports" in entry else None,
            events=tuple(entry.get("events", EVENTS)),
            settings={key: value for key, value in entry.items() if key not in NOTIFICATION_KEYS},
            base_dir=folder("notifications", name),
            secret_paths=tuple((notifier_secret_paths_by_type or {}).get(entry["type"], ())),
            setting_locations=_value_locations(loaded, ("notifications", name), entry),
        )
        for name, entry in data.get("notifications", {}).items()
    }
    return Config(path, state_path, sources, segments, connections, exports, loaded, state_url, notifications,
                  SyncLogConfig(**data.get("sync_log", {})))


def _value_locations(loaded: LoadedConfig, base: tuple[str, ...], entry: Any) -> dict[tuple[str | int, ...], str]:
    """file:line:col of each value below ``base`` (in mappings and lists, at any depth), keyed by its path."""
    items = entry.items() if isinstance(entry, dict) else enumerate(entry) if isinstance(entry, list) else ()
    locations: dict[tuple[str | int, ...], str] = {}
    for key, value in items:
        locations[(key,)] = str(loaded.location((*base, key)))
        for below, where in _value_locations(loaded, (*base, key), value).items():
            locations[(key, *below)] = where
    return locations


def _config_root(path: Path) -> Path:
    """The folder state defaults to: the config directory, or the config file's folder."""
    return path.resolve() if path.is_dir() else path.resolve().parent
