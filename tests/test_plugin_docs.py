"""docs/plugins.md is true: every public name it lists imports from the module it names, and its
examples run against the plugin `segship plugin new acme` writes (the one they describe).

The Python examples are executed (the conformance example is run by pytest, in a process of its
own, against the scaffolded plugin's sandbox); the TOML example is the scaffold's entry point.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer

from segship.scaffold import write_plugin

REPO = Path(__file__).resolve().parent.parent
PLUGINS_DOC = REPO / "docs" / "plugins.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: a row of the "Public names" table: | `module` | `Name`, `other` (a note) |
PUBLIC_ROW = re.compile(r"^\| `(segship[\w.]*)` \| (.+) \|$", re.MULTILINE)


def _blocks(language: str) -> list[str]:
    return [match.group(2) for match in FENCE.finditer(PLUGINS_DOC.read_text(encoding="utf-8"))
            if match.group(1) == language]


def _public_names() -> list[tuple[str, str]]:
    section = PLUGINS_DOC.read_text(encoding="utf-8").split("## Public names", 1)[1].split("\n## ", 1)[0]
    return [(module, name) for module, names in PUBLIC_ROW.findall(section)
            for name in re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", names))]


def test_the_public_names_table_is_found() -> None:
    modules = {module for module, _ in _public_names()}
    assert {"segship.destination", "segship.http", "segship.testing", "segship.sandbox"} <= modules
    assert len(_public_names()) > 50


@pytest.mark.parametrize(("module", "name"), _public_names(), ids=lambda value: value)
def test_every_public_name_imports_from_the_module_it_is_listed_under(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_the_modules_export_what_the_table_lists() -> None:
    listed = {module: {name for listed_module, name in _public_names() if listed_module == module}
              for module in ("segship.destination", "segship.http", "segship.testing")}
    for module, names in listed.items():
        assert set(importlib.import_module(module).__all__) == names, module


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin `segship plugin new acme` writes, importable."""
    write_plugin("acme", tmp_path / "segship-acme")
    monkeypatch.syspath_prepend(str(tmp_path / "segship-acme"))
    yield tmp_path / "segship-acme"
    for name in [name for name in sys.modules if name.startswith("segship_acme")]:
        del sys.modules[name]


def test_the_entry_point_example_is_the_scaffolds(acme: Path) -> None:
    (example,) = _blocks("toml")
    scaffolded = tomllib.loads((acme / "pyproject.toml").read_text(encoding="utf-8"))
    assert tomllib.loads(example)["project"]["entry-points"] == scaffolded["project"]["entry-points"]


def test_the_python_examples_run(acme: Path) -> None:
    examples = [block for block in _blocks("python") if "DestinationConformance" not in block]
    assert len(examples) == 3  # plugin registration, a sandbox command, a notifier
    namespaces = []
    for example in examples:
        namespace: dict[str, object] = {}
        exec(compile(example, str(PLUGINS_DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
        namespaces.append(namespace)
    registered: list[type] = []
    namespaces[0]["segship_register_destinations"](registered.append)
    assert [cls.__name__ for cls in registered] == ["AcmeDestination"]
    sandbox = typer.Typer()
    namespaces[1]["segship_register_commands"](None, sandbox)
    assert [command.name for command in sandbox.registered_commands] == ["acme"]
    assert namespaces[2]["PagerDutyNotifier"].name == "pagerduty"


def test_the_conformance_example_passes_against_the_scaffolded_plugin(acme: Path) -> None:
    (example,) = [block for block in _blocks("python") if "DestinationConformance" in block]
    (acme / "tests" / "test_conformance.py").write_text(example, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=acme,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b11 passed\b", result.stdout), result.stdout[-2000:]
