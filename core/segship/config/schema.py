"""The core JSON Schema and its composition with the installed plugins' schemas.

The core schema (``schemas/segship.schema.json``) knows no destination. Composition
adds, for each installed plugin type, an ``if type == X then settings: <X's schema>``
branch under connections, sources and notifications, and offers the export settings and mapping
schemas of every destination to editors. Validation checks an export's settings and
mapping against the schemas of its connection's type directly (see validate.py),
which JSON Schema alone can't express since the export names its connection.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from segship.plugins import Plugins

SCHEMA_FILE = "segship.schema.json"


def _schema_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    packaged = here / "schemas"              # inside a built wheel
    if (packaged / SCHEMA_FILE).exists():
        return packaged
    return here.parent.parent / "schemas"    # editable install: the repository's schemas/


@cache
def core_schema() -> dict[str, Any]:
    return orjson.loads((_schema_dir() / SCHEMA_FILE).read_bytes())


def _type_branch(type_values: list[str], then: dict[str, Any]) -> dict[str, Any]:
    condition = {"const": type_values[0]} if len(type_values) == 1 else {"enum": type_values}
    return {"if": {"properties": {"type": condition}, "required": ["type"]}, "then": then}


def _typed_entry(plugin_schema: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """A plugin's schema of an entry's keys, with the keys segship keeps for itself (``common``) added."""
    entry = copy.deepcopy(plugin_schema)
    entry["properties"] = {**copy.deepcopy(common), **entry.get("properties", {})}
    return entry


#: what validate skips for a ``${env:…}``/``${file:…}`` value until a run resolves it
VALUE_KEYWORDS = ("pattern", "format", "enum", "const", "minLength", "maxLength")
REFERENCE_PATTERN = r"\$\{(env|file):[^}]+\}"
DOC_KEYWORDS = ("title", "description", "default", "examples", "x-secret")


def _accept_references(settings_schema: dict[str, Any]) -> None:
    """Let editors accept a reference where a connection setting checks its value (as validate does).

    ``rest_endpoint: ${env:BRAZE_REST_ENDPOINT}`` would otherwise be flagged by the
    setting's URL pattern in every editor, though `segship validate` accepts it.
    """
    for name, prop in settings_schema.get("properties", {}).items():
        if isinstance(prop, dict) and any(keyword in prop for keyword in VALUE_KEYWORDS):
            docs = {key: prop[key] for key in DOC_KEYWORDS if key in prop}
            settings_schema["properties"][name] = {
                **docs, "anyOf": [prop, {"type": "string", "pattern": REFERENCE_PATTERN,
                                         "description": "A reference resolved at run time: ${env:VAR} or "
                                                        "${file:PATH}."}]}


def composed_schema(plugins: Plugins, *, for_editors: bool = True) -> dict[str, Any]:
    """The core schema with every installed plugin's schemas composed in.

    ``for_editors`` also offers every destination's export settings and mapping
    schemas (``anyOf``) for completion; validation leaves that out and checks each
    export against its own connection type's schemas instead.
    """
    schema = copy.deepcopy(core_schema())
    defs = schema["$defs"]
    destinations = plugins.destination_types()
    names = sorted(destinations)

    connection = defs["connection"]
    connection["properties"]["type"] = {"enum": names, "description": "Destination plugin name."}
    connection["allOf"] = []
    export_settings: list[dict[str, Any]] = []
    export_mappings: list[dict[str, Any]] = []
    for cls in sorted(set(destinations.values()), key=lambda c: c.name):
        values = [cls.name, *cls.aliases]
        defs[f"{cls.name}.connection"] = copy.deepcopy(cls.connection_schema)
        if for_editors:
            _accept_references(defs[f"{cls.name}.connection"])
        defs[f"{cls.name}.export_settings"] = copy.deepcopy(cls.export_settings_schema)
        defs[f"{cls.name}.mapping"] = copy.deepcopy(cls.mapping_schema)
        connection["allOf"].append(_type_branch(
            values, {"properties": {"settings": {"$ref": f"#/$defs/{cls.name}.connection"}}}))
        export_settings.append({"$ref": f"#/$defs/{cls.name}.export_settings"})
        export_mappings.append({"$ref": f"#/$defs/{cls.name}.mapping"})
    if export_settings and for_editors:
        # for editors only: validation picks the one schema of the export's connection type
        defs["export"]["properties"]["settings"]["anyOf"] = export_settings
        defs["export"]["properties"]["mapping"]["anyOf"] = export_mappings

    source = defs["source"]
    source["properties"]["type"] = {"enum": sorted(plugins.sources), "description": "Source plugin name."}
    source["allOf"] = [
        _type_branch([name], _typed_entry(cls.options_schema, {"type": {"type": "string"}}))
        for name, cls in sorted(plugins.sources.items())
    ]

    notification = defs["notification"]
    common = notification["properties"]  # type, exports, events: every channel's, besides its own settings
    notification["allOf"] = []
    for name, cls in sorted(plugins.notifiers.items()):
        entry = _typed_entry(cls.settings_schema, common)
        if for_editors:
            _accept_references(entry)
        notification["allOf"].append(_type_branch([name], entry))
    notification["properties"] = {**common, "type": {"enum": sorted(plugins.notifiers),
                                                     "description": "Notifier plugin name."}}
    return schema


def secret_fields(schema: dict[str, Any]) -> list[str]:
    """Top-level settings a plugin marks ``"x-secret": true``."""
    return [name for name, prop in schema.get("properties", {}).items()
            if isinstance(prop, dict) and prop.get("x-secret")]
