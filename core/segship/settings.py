"""What a plugin's settings schema says about values beyond checking them: defaults and secrets.

A plugin declares its settings as JSON Schema (a destination's connection settings, export
settings and mapping; a notifier's settings). Two of its keywords are segship's contract:

- ``default``: :func:`with_defaults` fills in every property the schema gives a default for and
  the value leaves out, at any depth of nested objects, so a plugin never restates its defaults in
  Python. A default that is itself an object gets the defaults below it too.
- ``"x-secret": true``: the value must be given by reference (``${env:…}``/``${file:…}``), is
  resolved only when a run needs it and is redacted everywhere. :func:`secret_paths` finds every
  such setting at any depth (properties, ``items`` of arrays, ``additionalProperties`` of mappings);
  :func:`is_secret` tells whether a value's path is one of them or lies within one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: In a path of :func:`secret_paths`: any item of an array, any value of a mapping.
ANY = "*"

Path = tuple[str | int, ...]


def with_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in where it leaves a property out, at any depth.

    Only objects get defaults (a missing property whose schema has a ``default``); what the value
    gives is kept as it is. ``value`` itself is not changed. Values of another type than the
    schema's (a ``${env:…}`` reference in place of an object) are returned untouched.
    """
    if not isinstance(value, Mapping):
        return value
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return value
    filled = dict(value)
    for name, subschema in properties.items():
        if not isinstance(subschema, Mapping):
            continue
        if name in filled:
            filled[name] = with_defaults(subschema, filled[name])
        elif "default" in subschema:
            filled[name] = with_defaults(subschema, copy.deepcopy(subschema["default"]))
    return filled


def secret_paths(schema: Mapping[str, Any]) -> list[Path]:
    """Paths of the settings marked ``"x-secret": true``, at any depth: ``("smtp", "password")``,
    ``("headers", ANY, "value")`` for a field of every item of an array. A secret object (a
    mapping) makes every value in it a secret; nothing below a secret is listed."""
    paths: list[Path] = []
    for name, below in _children(schema):
        if below.get("x-secret"):
            paths.append((name,))
        else:
            paths += [(name, *inner) for inner in secret_paths(below)]
    return paths


def _children(schema: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, subschema in (schema.get("properties") or {}).items():
        if isinstance(subschema, Mapping):
            yield name, subschema
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), Mapping):
            yield ANY, schema[keyword]


def is_secret(path: Path, secrets: Iterable[Path]) -> bool:
    """Whether the value at ``path`` (concrete: names and list indexes) is, or lies in, a secret."""
    return any(len(path) >= len(secret) and all(part == ANY or part == step for part, step in zip(secret, path))
               for secret in secrets)


def values_at(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """The values ``path`` names in ``value`` (every item or entry where it says :data:`ANY`), with
    their concrete paths; a path that leads nowhere names nothing."""
    if not path:
        yield (), value
        return
    step, rest = path[0], path[1:]
    if step == ANY and isinstance(value, Mapping):
        entries: Iterable[tuple[str | int, Any]] = value.items()
    elif step == ANY and isinstance(value, list):
        entries = enumerate(value)
    elif isinstance(value, Mapping) and step in value:
        entries = ((step, value[step]),)
    else:
        return
    for key, item in entries:
        for below, found in values_at(item, rest):
            yield (key, *below), found
