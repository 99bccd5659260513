"""A new destination plugin distribution, written from the templates in ``segship/templates/plugin``.

``segship plugin new NAME [DIR]`` calls :func:`write_plugin`: a pyproject with the ``segship``
entry point, the destination (a JSON-over-HTTP service's), its schemas, a sandbox emulating the
service, tests running segship's conformance suite against it, and a README. Its tests pass as
written; an author then changes the API it speaks. The templates are ``string.Template`` texts
(``$name``, ``$package``, ``$cls``, ``$distribution``, ``$env_prefix``, ``$segship_version``).
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from segship import __version__
from segship.errors import SegshipError

#: what a plugin's name may be: its connection ``type``, and (with ``segship_``) its Python package
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ScaffoldError(SegshipError):
    """The plugin can't be written (a bad name, files already there)."""


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write the distribution ``segship-NAME`` into ``directory`` (made if missing); return the files
    written. Raises ScaffoldError, writing nothing, if the name is not one or a file exists."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(f"{name!r} can't name a plugin: lower-case letters, digits and _, starting with a "
                            "letter (it is the connection type and part of the Python package's name)")
    values = {"name": name, "package": f"segship_{name}", "distribution": f"segship-{name.replace('_', '-')}",
              "cls": "".join(part.capitalize() for part in name.split("_")), "env_prefix": name.upper(),
              "segship_version": __version__}
    templates = files("segship") / "templates" / "plugin"
    texts = {directory / _target(path, values["package"]): Template(source.read_text(encoding="utf-8"))
             .substitute(values) for path, source in _templates(templates)}
    existing = [str(path) for path in texts if path.exists()]
    if existing:
        raise ScaffoldError(f"{', '.join(existing)}: already exist(s); plugin new overwrites nothing")
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(texts)


def _templates(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.is_dir():
            found.extend(_templates(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(".tmpl"):
            found.append((prefix + entry.name.removesuffix(".tmpl"), entry))
    return found


def _target(path: str, package: str) -> str:
    """Where a template goes: its ``package/`` folder is the plugin's package."""
    return package + path.removeprefix("package") if path.startswith("package/") else path
