"""Validation: the composed JSON Schema, then references and plugin rules; every issue placed.

Order: YAML and merge problems (loader) stop early; then schema errors and reference
checks are all reported together, so one `segship validate` shows everything it can.
Values of secret fields are never quoted in a message.
"""

from __future__ import annotations

import difflib
import os
import re
from urllib.parse import urlsplit
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from croniter import croniter

from segship.config.issues import ConfigError, ConfigIssue, display_path
from segship.config.loader import LoadedConfig, Path_, load_documents
from segship.config.model import NOTIFICATION_KEYS, Config, build_config
from segship.config.schema import composed_schema, secret_fields
from segship.plugins import Plugins
from segship.secrets import SecretResolutionError, has_reference, is_reference
from segship.settings import ANY, secret_paths, values_at, with_defaults

# checks a ${env:…}/${file:…} reference can't pass before it is resolved (at run time)
VALUE_CHECKS = {"pattern", "format", "enum", "const", "minLength", "maxLength"}

#: names a "which is not defined" message lists: a config of thousands of segments would repeat them all
LISTED_NAMES = 20

JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
              float: "a number", type(None): "empty (null)"}
SCHEMA_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "boolean": "a boolean",
                     "integer": "an integer", "number": "a number", "null": "null"}


def dotted(path: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in path) or "the config"


def _shown(value: Any, subschema: Any) -> str:
    """A value for a message: never a secret's, never very long."""
    if isinstance(subschema, dict) and subschema.get("x-secret"):
        return "(secret value not shown)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_phrase(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(SCHEMA_TYPE_NAMES.get(name, name) for name in names)


def _close_key(extra: str, allowed: list[str]) -> str | None:
    """The allowed key a mistyped or shortened one most likely meant (``consent`` -> ``data_privacy_consent``)."""
    containing = [key for key in allowed if len(extra) >= 4 and extra.lower() in key.lower()]
    if len(containing) == 1:
        return containing[0]
    close = difflib.get_close_matches(extra, allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _names_a_property(error: jsonschema.ValidationError) -> bool:
    """True for an error found by a ``propertyNames`` subschema (jsonschema reports its inner keyword)."""
    schema_path = list(error.absolute_schema_path)
    return any(part == "propertyNames" and (index == 0 or schema_path[index - 1] != "properties")
               for index, part in enumerate(schema_path))


def _schema_issues(error: jsonschema.ValidationError, prefix: Path_,
                   loaded: LoadedConfig) -> Iterator[ConfigIssue]:
    path = prefix + tuple(error.absolute_path)
    where = dotted(path)
    instance, schema, kind = error.instance, error.schema, error.validator
    if kind in VALUE_CHECKS and has_reference(instance):
        return  # checked once resolved, when a run needs it (see resolve_connection_settings)
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for extra in sorted(set(instance) - set(allowed)):
            close = _close_key(str(extra), allowed)
            hint = f" (did you mean {close!r}?)" if close else ""
            hint += f"; expected one of: {', '.join(allowed)}" if allowed else ""
            yield ConfigIssue(loaded.location(path + (extra,), key=True), f"unknown key {extra!r} in {where}{hint}")
        return
    if kind == "required" and isinstance(instance, dict):
        for missing in schema.get("required", []):
            if missing not in instance:
                expected = schema.get("properties", {}).get(missing, {})
                hint = f" (add {missing}: {expected['const']!r})" if isinstance(expected, dict) and \
                    "const" in expected else ""
                yield ConfigIssue(loaded.location(path, key=True),
                                  f"{where}: missing required key {missing!r}{hint}")
        return
    if kind == "dependentRequired" and isinstance(instance, dict):
        for key, needed in error.validator_value.items():
            missing = [name for name in needed if key in instance and name not in instance]
            if missing:
                yield ConfigIssue(loaded.location(path + (key,), key=True),
                                  f"{where}.{key} needs {' and '.join(map(repr, missing))} beside it")
        return
    if _names_a_property(error):
        # error.instance is the offending name; absolute_path stops at the mapping that holds it
        yield ConfigIssue(loaded.location(path + (instance,), key=True),
                          f"invalid name {instance!r} in {where}: use letters, digits, '_' or '-', "
                          "starting with a letter or '_' (at most 64 characters)")
        return
    location = loaded.location(path)
    if kind == "type":
        message = f"{where} must be {_type_phrase(error.validator_value)}, not {JSON_TYPES.get(type(instance), type(instance).__name__)}"
    elif kind == "enum":
        choices = ", ".join(repr(choice) for choice in error.validator_value) or "(none installed)"
        message = f"{where} must be one of {choices}; got {_shown(instance, schema)}"
        if path[-1:] == ("type",) and len(path) == 3:
            message += " (is the plugin installed? see `segship plugins`)"
    elif kind == "const":
        message = f"{where} must be {error.validator_value!r}; got {_shown(instance, schema)}"
    elif kind == "pattern":
        message = f"{where}: {_shown(instance, schema)} does not match the expected pattern {error.validator_value}"
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        comparison = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        message = f"{where} must be {comparison} {error.validator_value}; got {_shown(instance, schema)}"
    elif kind in ("minLength", "minItems"):
        message = f"{where} must not be empty" if error.validator_value == 1 else \
            f"{where} needs at least {error.validator_value} {'characters' if kind == 'minLength' else 'items'}"
    elif kind in ("maxLength", "maxItems"):
        message = f"{where} allows at most {error.validator_value} {'characters' if kind == 'maxLength' else 'items'}"
    elif kind == "uniqueItems":
        message = f"{where} must not repeat items"
    elif kind == "format":
        message = f"{where} must be a valid {error.validator_value}; got {_shown(instance, schema)}"
    else:
        detail = error.message if not (isinstance(schema, dict) and schema.get("x-secret")) else "invalid value"
        message = f"{where}: {detail}"
    if isinstance(schema, dict) and schema.get("description") and kind in ("type", "pattern", "format"):
        message += f" ({schema['description'].rstrip('.')})"
    yield ConfigIssue(location, message)


def _validate_schema(instance: Any, schema: dict[str, Any], prefix: Path_,
                     loaded: LoadedConfig) -> list[ConfigIssue]:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    issues: list[ConfigIssue] = []
    for error in validator.iter_errors(instance):
        issues.extend(_schema_issues(error, prefix, loaded))
    return issues


def _entries(data: dict[str, Any], section: str) -> Iterator[tuple[str, dict[str, Any]]]:
    content = data.get(section)
    if isinstance(content, dict):
        for name, entry in content.items():
            if isinstance(entry, dict):
                yield name, entry


def _check_references(loaded: LoadedConfig, plugins: Plugins) -> list[ConfigIssue]:
    data = loaded.data
    issues: list[ConfigIssue] = []

    def issue(path: Path_, message: str, *, key: bool = False) -> None:
        issues.append(ConfigIssue(loaded.location(path, key=key), message))

    # a section that is there but not a mapping is a schema error already: names in it aren't checked
    invalid = {section for section in ("sources", "segments", "connections")
               if section in data and not isinstance(data[section], dict)}
    sources = data.get("sources") if isinstance(data.get("sources"), dict) else {}
    segments = data.get("segments") if isinstance(data.get("segments"), dict) else {}
    connections = data.get("connections") if isinstance(data.get("connections"), dict) else {}
    types = plugins.destination_types()
    # once, not per broken reference: each message lists the names a reference may use
    known = {"sources": _listed(sources), "segments": _listed(segments), "connections": _listed(connections)}

    def destination_type(connection: dict[str, Any]) -> Any:
        """The plugin class of a connection's type; None when unknown or not a name (a schema error)."""
        name = connection.get("type")
        return types.get(name) if isinstance(name, str) else None

    @cache
    def settings_valid(connection_name: str) -> bool:
        """A connection's settings pass its plugin's schema: checked once, however many exports use it."""
        connection = connections[connection_name]
        return not _validate_schema(connection["settings"], destination_type(connection).connection_schema,
                                    ("connections", connection_name, "settings"), loaded)

    issues.extend(_state_issues(loaded))

    for name, segment in _entries(data, "segments"):
        source = segment.get("source")
        if isinstance(source, str) and source not in sources and "sources" not in invalid:
            issue(("segments", name, "source"), f"segment {name!r} uses source {source!r}, which is not defined "
                                                f"(sources: {known['sources']})")

    for name, connection in _entries(data, "connections"):
        cls = destination_type(connection)
        settings = connection.get("settings")
        if cls is not None and isinstance(settings, dict):
            issues.extend(_literal_secrets(loaded, ("connections", name, "settings"), settings,
                                           cls.connection_schema, cls.name))
        if isinstance(connection.get("network"), dict):
            issues.extend(_network_issues(loaded, ("connections", name, "network"), connection["network"]))
    for name, source in _entries(data, "sources"):
        source_cls = plugins.source(source["type"]) if isinstance(source.get("type"), str) else None
        if source_cls is not None:
            issues.extend(_literal_secrets(loaded, ("sources", name), source, source_cls.options_schema, name))
    issues.extend(_notification_issues(loaded, plugins))

    for name, export in _entries(data, "exports"):
        base: Path_ = ("exports", name)
        for reference_path in _references_in(export, base):
            issue(reference_path, f"{dotted(reference_path)}: ${{env:…}}/${{file:…}} references are resolved only "
                                  "in connection settings; write the value here")
        connection_name = export.get("connection")
        connection = connections.get(connection_name) if isinstance(connection_name, str) else None
        if isinstance(connection_name, str) and connection is None and "connections" not in invalid:
            issue(base + ("connection",), f"export {name!r} uses connection {connection_name!r}, which is not "
                                          f"defined (connections: {known['connections']})")
        segment_names = export.get("segments") if isinstance(export.get("segments"), list) else []
        for index, segment_name in enumerate(segment_names):
            if isinstance(segment_name, str) and segment_name not in segments and "segments" not in invalid:
                issue(base + ("segments", index), f"export {name!r} uses segment {segment_name!r}, which is not "
                                                  f"defined (segments: {known['segments']})")
        schedule = export.get("schedule")
        if isinstance(schedule, str) and not croniter.is_valid(schedule):
            issue(base + ("schedule",), f"exports.{name}.schedule: {schedule!r} is not a valid cron expression "
                                        "(five fields: minute hour day-of-month month day-of-week)")
        if not isinstance(connection, dict):
            continue
        consent = connection.get("data_privacy_consent")
        if consent is None or consent is False:  # any other value is a schema error (not a boolean)
            consent_path: Path_ = ("connections", connection_name)
            if "data_privacy_consent" in connection:
                consent_path += ("data_privacy_consent",)
            issue(consent_path, f"connection {connection_name!r} is used by export {name!r} but has no data "
                                "privacy consent: set data_privacy_consent: true to agree to send personal data "
                                "through it", key="data_privacy_consent" not in connection)
        cls = destination_type(connection)
        if cls is None:
            continue
        section_issues: list[ConfigIssue] = []
        for section, schema in (("settings", cls.export_settings_schema), ("mapping", cls.mapping_schema)):
            if section in export:
                section_issues += _validate_schema(export[section], schema, base + (section,), loaded)
        issues += section_issues
        settings, mapping = export.get("settings"), export.get("mapping")
        conn_settings = connection.get("settings")
        # a plugin's own rules get what its schemas accept (the connection's problems are reported above)
        if not section_issues and isinstance(settings, dict) and isinstance(mapping, dict) and \
                isinstance(conn_settings, dict) and settings_valid(connection_name):
            # the plugin's rules see its defaults filled in, as its destination does
            for problem in cls.check_export(with_defaults(cls.connection_schema, conn_settings),
                                            with_defaults(cls.export_settings_schema, settings),
                                            with_defaults(cls.mapping_schema, mapping)):
                issue(base + tuple(problem.path), problem.message)
    return issues


def _notification_issues(loaded: LoadedConfig, plugins: Plugins) -> list[ConfigIssue]:
    """``notifications``: secrets by reference, exports that exist, and the channel's own rules."""
    issues: list[ConfigIssue] = []
    exports = loaded.data.get("exports")
    for name, entry in _entries(loaded.data, "notifications"):
        base: Path_ = ("notifications", name)
        listed = entry.get("exports") if isinstance(entry.get("exports"), list) else []
        for index, export in enumerate(listed):
            if isinstance(export, str) and isinstance(exports, dict) and export not in exports:
                issues.append(ConfigIssue(loaded.location(base + ("exports", index)),
                                          f"notification {name!r} names export {export!r}, which is not defined "
                                          f"(exports: {_listed(exports)})"))
        cls = plugins.notifier(entry["type"]) if isinstance(entry.get("type"), str) else None
        if cls is None:
            continue  # an unknown type is a schema error already
        issues.extend(_literal_secrets(loaded, base, entry, cls.settings_schema, name))
        settings = {key: value for key, value in entry.items() if key not in NOTIFICATION_KEYS}
        # the channel's own rules get what its schema accepts (its schema's problems are reported already)
        if not _validate_schema(settings, cls.settings_schema, base, loaded):
            issues += [ConfigIssue(loaded.location(base + tuple(problem.path)),
                                   f"{dotted(base + tuple(problem.path))}: {problem.message}")
                       for problem in cls.check_settings(settings)]
    return issues


def _listed(names: Iterable[str]) -> str:
    """Defined names for a message: sorted, the first :data:`LISTED_NAMES` of a long list."""
    ordered = sorted(names)
    # a name with a control character (an invalid one, reported on its own) is quoted: printed raw,
    # a line separator in it would cut the message's line in two
    shown = ", ".join(name if name.isprintable() else repr(name) for name in ordered[:LISTED_NAMES]) or "none defined"
    return shown if len(ordered) <= LISTED_NAMES else f"{shown} and {len(ordered) - LISTED_NAMES:,} more"


def _literal_secrets(loaded: LoadedConfig, base: Path_, values: dict[str, Any], schema: dict[str, Any],
                     env_prefix: str) -> Iterator[ConfigIssue]:
    """Secret fields (``x-secret``; of a mapping, each value) written literally instead of by reference.

    The one check for connection settings, source options and notification channels; the value is
    never quoted. A secret at any depth (``smtp.password``, a field of each item of a list) is found too.
    """
    for secret in secret_paths(schema):
        for place, item in _secret_values(values, secret):
            if item is None or is_reference(item):
                continue
            path = base + place
            variable = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(map(str, (env_prefix, *place)))).upper()
            yield ConfigIssue(loaded.location(path), f"{dotted(path)} is a secret: write a reference such as "
                                                     f"${{env:{variable}}} or ${{file:path/to/secret}}, never the "
                                                     "secret itself")


def _secret_values(values: dict[str, Any], secret: tuple[str, ...]) -> Iterator[tuple[Path_, Any]]:
    """The values a secret path names, with their paths; a secret mapping or list (``options``) holds
    a secret in each of its values."""
    for place, value in values_at(values, secret):
        if isinstance(value, (dict, list)):
            yield from ((place + below, item) for below, item in values_at(value, (ANY,)))
        else:
            yield place, value


def _network_issues(loaded: LoadedConfig, base: Path_, network: dict[str, Any]) -> Iterator[ConfigIssue]:
    """A connection's ``network:``: a proxy URL's password and the client key by reference only, never
    quoted; a literal proxy URL must be one."""
    proxy = network.get("proxy")
    if isinstance(proxy, str) and not is_reference(proxy):
        path = base + ("proxy",)
        parts = urlsplit(proxy.strip())
        try:
            host = parts.hostname
        except ValueError:
            host = None
        if parts.password and not is_reference(parts.password):
            yield ConfigIssue(loaded.location(path), f"{dotted(path)} holds a password: write the URL by reference "
                                                     "(${env:EGRESS_PROXY_URL}) or its password "
                                                     "(http://user:${env:PROXY_PASSWORD}@host:port), never the "
                                                     "password itself")
        elif not has_reference(proxy) and (parts.scheme not in ("http", "https") or not host):
            yield ConfigIssue(loaded.location(path), f"{dotted(path)}: {_shown(proxy, {})} is not a proxy URL "
                                                     "(expected http://host:port or https://host:port)")
    tls = network.get("tls")
    key = tls.get("client_key") if isinstance(tls, dict) else None
    if isinstance(key, str) and not is_reference(key):
        path = base + ("tls", "client_key")
        yield ConfigIssue(loaded.location(path), f"{dotted(path)} is a secret: write a reference such as "
                                                 "${file:/run/secrets/segship.key} (the key file) or "
                                                 "${env:SEGSHIP_CLIENT_KEY} (the key itself), never the key")


def _state_issues(loaded: LoadedConfig) -> list[ConfigIssue]:
    """``state``: a path or a URL, not both; the URL (it holds a password) by reference only."""
    state = loaded.data.get("state")
    if not isinstance(state, dict):
        return []
    if "path" in state and "url" in state:
        return [ConfigIssue(loaded.location(("state", "url"), key=True),
                            "state: give either path (a SQLite file) or url (PostgreSQL), not both")]
    url = state.get("url")
    if isinstance(url, str) and not is_reference(url):
        return [ConfigIssue(loaded.location(("state", "url")),
                            "state.url is a secret (it holds the database password): write a reference such as "
                            "${env:SEGSHIP_STATE_URL} or ${file:path/to/secret}, never the URL itself")]
    return []


def _references_in(value: Any, path: Path_) -> Iterator[Path_]:
    """Paths of strings holding a ${env:…}/${file:…} reference, below ``path``."""
    if isinstance(value, str):
        if has_reference(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _references_in(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references_in(item, path + (index,))


def ci_state_warnings(config: Config) -> list[ConfigIssue]:
    """A warning when validate runs in CI (``CI=true``, as GitHub Actions, GitLab and others set it) and
    state is a local SQLite file: a runner's disk starts empty, so each run would start from empty
    state. Not an error: a CI job may only validate and plan offline."""
    if os.environ.get("CI", "").strip().lower() not in ("true", "1") or config.state_url_reference() is not None:
        return []
    return [ConfigIssue(config.loaded.location(("state", "path")),
                        f"state is the local file {display_path(config.state_path)} and this runs in CI (CI=true): "
                        "a CI runner's disk starts empty, so a run here would start from empty state every time "
                        "(every member sent again as new, leavers never removed). Use state shared by every "
                        'runner: state: {url: "${env:SEGSHIP_STATE_URL}"}, or no state key with '
                        "SEGSHIP_STATE_URL set (docs/gitops.md)")]


def role_issues(config: Config, role: str, export_names: Iterable[str]) -> list[ConfigIssue]:
    """Exports the role may not run: a contributor can't use an admins-only connection."""
    issues = []
    for name in export_names:
        export = config.exports[name]
        connection = config.connections[export.connection]
        if not connection.usable_by_role(role):
            who = " and ".join(connection.usable_by)
            issues.append(ConfigIssue(config.loaded.location(("exports", name, "connection")),
                                      f"export {name!r} uses connection {connection.name!r}, which only {who} may "
                                      f"use; you run as {role} (--role / SEGSHIP_ROLE)"))
    return issues


def load_config(path: Path, plugins: Plugins) -> Config:
    """Load, validate and build the config at ``path``; raise ConfigError listing every issue."""
    loaded = load_documents(path)
    issues = _validate_schema(loaded.data, composed_schema(plugins, for_editors=False), (), loaded)
    issues += _check_references(loaded, plugins)
    if issues:
        raise ConfigError(issues)
    secrets_by_type = {type_name: secret_paths(cls.connection_schema)
                       for type_name, cls in plugins.destination_types().items()}
    source_secrets_by_type = {type_name: secret_fields(cls.options_schema) for type_name, cls in plugins.sources.items()}
    notifier_secrets_by_type = {type_name: secret_paths(cls.settings_schema)
                                for type_name, cls in plugins.notifiers.items()}
    return build_config(path, loaded, secrets_by_type, source_secrets_by_type, notifier_secrets_by_type)


def resolve_connection_settings(config: Config, connection_name: str, plugins: Plugins) -> dict[str, Any]:
    """Resolve a connection's references and check the values against the plugin's schema.

    Raises SecretResolutionError naming the setting and its place, never a secret value.
    """
    connection = config.connections[connection_name]
    cls = plugins.destination(connection.type)
    settings = connection.resolved_settings()
    validator = jsonschema.Draft202012Validator(cls.connection_schema, format_checker=jsonschema.FormatChecker())
    for error in validator.iter_errors(settings):
        path = tuple(error.absolute_path)
        written = next((value for _, value in values_at(connection.settings, path)), None) if path else None
        if not has_reference(written):
            continue  # literal values were checked by validate
        detail = "has an invalid value" if connection.is_secret(path) else f"is invalid: {error.message}"
        raise SecretResolutionError(f"{connection.setting_locations.get(path, connection_name)}: "
                                    f"connections.{connection_name}.settings.{dotted(path)} (from "
                                    f"{written}) {detail}")
    return settings
