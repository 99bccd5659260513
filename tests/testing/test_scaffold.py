"""`segship plugin new NAME [DIR]` writes a destination plugin distribution whose tests pass at once,
installed as a user installs it: into a fresh venv (seeing this environment's packages for the
dependencies), the core from this checkout and the new plugin both with pip."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_scaffolded_plugin_installs_and_its_tests_pass_at_once(segship, tmp_path: Path) -> None:
    created = segship("plugin", "new", "acme_mail", str(tmp_path / "plugin"))
    assert created.exit_code == 0, created.stderr
    assert "created" in created.stdout and "tests/test_conformance.py" in created.stdout
    plugin = tmp_path / "plugin"
    assert {path.relative_to(plugin).as_posix() for path in plugin.rglob("*") if path.is_file()} == {
        "pyproject.toml", "README.md", "tests/test_conformance.py", "segship_acme_mail/__init__.py",
        "segship_acme_mail/destination.py", "segship_acme_mail/plugin.py", "segship_acme_mail/sandbox.py",
        "segship_acme_mail/schemas.py"}

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ), timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # the dependencies (pytest, hypothesis, aiohttp, duckdb…) from this environment, not downloaded again
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # only what is installed
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "-e", str(REPO), "-e", str(plugin)], tmp_path, env)

    listed = _run([str(venv / "bin" / "segship"), "plugins"], tmp_path, env)
    assert "acme_mail" in listed.stdout
    tests = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], plugin, env)
    assert "11 passed" in tests.stdout, tests.stdout[-2000:]
    # the kit's fixtures come with the core, through its pytest11 entry point: no conftest, no import
    fixtures = _run([python, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"], plugin, env).stdout
    assert "fake_server" in fixtures and "export_harness" in fixtures


def test_plugin_new_refuses_a_name_that_cant_be_a_package_and_overwrites_nothing(segship, tmp_path: Path) -> None:
    refused = segship("plugin", "new", "Acme-Mail", str(tmp_path / "bad"))
    assert refused.exit_code == 2
    assert "'Acme-Mail' can't name a plugin: lower-case letters, digits and _" in refused.stderr
    assert not (tmp_path / "bad").exists()
    assert segship("plugin", "new", "acme", str(tmp_path / "acme")).exit_code == 0
    readme = tmp_path / "acme" / "README.md"
    readme.write_text("mine", encoding="utf-8")
    again = segship("plugin", "new", "acme", str(tmp_path / "acme"))
    assert again.exit_code == 2
    assert "already exist(s); plugin new overwrites nothing" in again.stderr
    assert readme.read_text(encoding="utf-8") == "mine"
