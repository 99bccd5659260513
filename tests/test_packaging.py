"""The distributions as users get them: wheels built and installed into a fresh venv.

One venv (no system site-packages, nothing editable) gets five wheels built by
``python -m build``: the core ``segship``, ``segship-braze``, ``segship-sendinblue``,
``segship-webhook`` and the third-party test plugin ``tests/plugins/segship-testdest``, whose second entry
point raises on import. The checks then run the installed ``segship`` script there:

- packaging: the core schema file is inside the wheel and found from it, the built-in plugins
  load, the example ``configs/`` validate;
- plugin discovery: a third-party destination appears in ``segship plugins`` and in
  ``segship schema``, its schemas validate configs, its command is registered, the
  broken entry point is skipped with a warning naming it, ``SEGSHIP_LOAD_PLUGINS``
  limits what loads.

The test plugin is never installed into the project's own .venv, where it would leak
into every other test. Building and installing takes some 20 to 40 seconds, once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {
    "segship": REPO,
    "segship-braze": REPO / "plugins" / "braze",
    "segship-sendinblue": REPO / "plugins" / "sendinblue",
    "segship-webhook": REPO / "plugins" / "webhook",
    "segship-testdest": REPO / "tests" / "plugins" / "segship-testdest",
}
BROKEN_WARNING = ("plugin 'testdest-broken' (segship-testdest) failed to load and was skipped: "
                  "RuntimeError: segship_testdest_broken fails on import on purpose")


@dataclass
class FreshVenv:
    root: Path
    python: Path
    site_packages: Path
    wheels: dict[str, Path]
    seconds: float


def _check(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"$ {' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    started = time.monotonic()
    root = tmp_path_factory.mktemp("packaging")
    wheel_dir = root / "wheels"
    # the builds are independent: run them side by side
    builds = {name: subprocess.Popen([sys.executable, "-m", "build", "--wheel", "--outdir", str(wheel_dir / name),
                                      str(source)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for name, source in DISTRIBUTIONS.items()}
    wheels: dict[str, Path] = {}
    for name, build in builds.items():
        output, _ = build.communicate(timeout=300)
        assert build.returncode == 0, f"building {name} failed:\n{output}"
        [wheel] = (wheel_dir / name).glob("*.whl")
        wheels[name] = wheel
    _check([sys.executable, "-m", "venv", str(root / "venv")], timeout=120)
    python = root / "venv" / "bin" / "python"
    _check([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            *map(str, wheels.values())], timeout=600)
    site_packages = Path(_check([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                                ).stdout.strip())
    return FreshVenv(root, python, site_packages, wheels, time.monotonic() - started)


@pytest.fixture
def cli(venv: FreshVenv, segship_runner, tmp_path: Path):
    """``cli(*args, env=...)`` runs the fresh venv's ``segship`` in ``tmp_path`` (outside the repository)."""

    def run(*args: str, env: dict[str, str] | None = None):
        return segship_runner(list(args), cwd=tmp_path, env=env, python=venv.python)

    return run


# -- packaging ----------------------------------------------------------------------------------------


def test_the_core_wheel_ships_the_schema(venv: FreshVenv) -> None:
    names = zipfile.ZipFile(venv.wheels["segship"]).namelist()
    assert "segship/schemas/segship.schema.json" in names
    assert not [name for name in names if name.startswith(("tests/", "configs/", "plugins/"))]


def test_the_venv_runs_the_wheels_not_the_checkout(venv: FreshVenv) -> None:
    """Nothing is editable: every package is imported from the venv's site-packages."""
    code = ("import segship, segship_braze, segship_sendinblue, segship_webhook, segship_testdest\n"
            "from segship.config.schema import _schema_dir, core_schema\n"
            "print(segship.__file__, segship_braze.__file__, segship_sendinblue.__file__, segship_webhook.__file__,"
            " segship_testdest.__file__, _schema_dir(), core_schema()['title'], sep='\\n')")
    lines = _check([str(venv.python), "-c", code], cwd=venv.root).stdout.splitlines()
    for path in lines[:6]:
        assert Path(path).is_relative_to(venv.site_packages), lines
    assert lines[5] == str(venv.site_packages / "segship" / "schemas")
    assert lines[6] == "segship config"


def test_the_built_in_plugins_and_the_third_party_one_are_listed(cli, venv: FreshVenv) -> None:
    result = cli("plugins")
    assert result.exit_code == 0, result
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in result.stdout.splitlines() if line.startswith("│")}
    assert rows["duckdb"][:4] == ["duckdb", "segship (built in)", "0.1.0", "source:duckdb"]
    assert rows["postgres"][:4] == ["postgres", "segship (built in)", "0.1.0", "source:postgres"]
    assert rows["adbc"][:4] == ["adbc", "segship (built in)", "0.1.0", "source:adbc"]
    assert rows["notifiers"][:4] == ["notifiers", "segship (built in)", "0.1.0",
                                     "notifier:slack, notifier:webhook, notifier:email"]
    assert rows["braze"][:4] == ["braze", "segship-braze", "0.1.0", "destination:braze"]
    assert rows["sendinblue"][:4] == ["sendinblue", "segship-sendinblue", "0.1.0", "destination:sendinblue"]
    assert rows["webhook"][:4] == ["webhook", "segship-webhook", "0.1.0", "destination:webhook"]
    assert rows["testdest"][:4] == ["testdest", "segship-testdest", "0.3.1", "destination:testdest"]
    assert rows["testdest"][4].startswith(str(venv.site_packages)), result
    assert "testdest-broken" not in rows


def test_the_example_configs_validate(cli, tmp_path: Path) -> None:
    shutil.copytree(REPO / "configs", tmp_path / "configs", ignore=shutil.ignore_patterns(".segship"))
    result = cli("validate", "-c", "configs")
    assert result.exit_code == 0, result
    assert "configs: valid (1 sources, 2 segments, 3 connections, 3 exports)" in result.stdout


def test_init_works_from_the_wheel_whose_templates_it_writes(cli, venv: FreshVenv) -> None:
    names = zipfile.ZipFile(venv.wheels["segship"]).namelist()
    assert {"segship/templates/segship.yaml", "segship/templates/github-workflow.yml"} <= set(names)
    assert cli("init", "repo").exit_code == 0
    result = cli("validate", "-c", "repo/segship.yaml")
    assert result.exit_code == 0, result


def test_build_and_install_time_stays_modest(venv: FreshVenv) -> None:
    assert venv.seconds < 240, f"building and installing the wheels took {venv.seconds:.0f}s"


# -- a third-party plugin ----------------------------------------------------------------------------


def test_version_lists_every_installed_plugin(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("segship 0.1.0 (Python "), result
    assert lines[1:] == ["plugins:", "  segship-braze 0.1.0 (plugin braze: destination braze)",
                         "  segship-sendinblue 0.1.0 (plugin sendinblue: destination sendinblue)",
                         "  segship-testdest 0.3.1 (plugin testdest: destination testdest)",
                         "  segship-webhook 0.1.0 (plugin webhook: destination webhook)"], result


def test_a_plugin_that_raises_on_import_is_skipped_with_a_warning(cli) -> None:
    for args in (["plugins"], ["schema"], ["--help"]):
        result = cli(*args)
        assert result.exit_code == 0, result
        assert BROKEN_WARNING in result.stderr, result
        assert "Traceback" not in result.output, result


def test_the_third_party_schema_is_composed(cli) -> None:
    result = cli("schema")
    assert result.exit_code == 0, result
    schema = json.loads(result.stdout)
    defs = schema["$defs"]
    workspace = defs["testdest.connection"]["properties"]["workspace"]
    assert workspace["description"] == "Workspace ID, ws-<digits>."
    assert {"type": "string", "pattern": "^ws-[0-9]+$", "description": "Workspace ID, ws-<digits>."} \
        in workspace["anyOf"]  # or a ${env:…} reference, as validate accepts
    assert defs["testdest.export_settings"]["required"] == ["audience_id"]
    assert defs["testdest.mapping"]["required"] == ["id"]
    assert defs["connection"]["properties"]["type"]["enum"] == ["braze", "brevo", "sendinblue", "testdest", "webhook"]
    assert {"$ref": "#/$defs/testdest.export_settings"} in defs["export"]["properties"]["settings"]["anyOf"]
    branches = [branch for branch in defs["connection"]["allOf"]
                if branch["if"]["properties"]["type"] == {"const": "testdest"}]
    assert branches == [{"if": {"properties": {"type": {"const": "testdest"}}, "required": ["type"]},
                         "then": {"properties": {"settings": {"$ref": "#/$defs/testdest.connection"}}}}]


TESTDEST_CONFIG = """\
version: 1
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  everyone: {source: crm, key: id, sql: SELECT * FROM crm}
connections:
  test:
    type: testdest
    display_name: Test destination
    data_privacy_consent: true
    settings: {token: '${env:TESTDEST_TOKEN}', workspace: ws-42}
exports:
  everyone-to-test:
    display_name: Everyone
    connection: test
    segments: [everyone]
    settings: {audience_id: 7}
    mapping: {id: id, email: email}
"""


def test_a_config_using_the_third_party_destination_validates(cli, tmp_path: Path) -> None:
    (tmp_path / "segship.yaml").write_text(TESTDEST_CONFIG)
    result = cli("validate", "-c", "segship.yaml")
    assert result.exit_code == 0, result
    assert "1 connections, 1 exports" in result.stdout


@pytest.mark.parametrize(("change", "where", "message"), [
    (("ws-42", "ws42"), "segship.yaml:11:59",
     "connections.test.settings.workspace: 'ws42' does not match the expected pattern ^ws-[0-9]+$ "
     "(Workspace ID, ws-<digits>)"),
    (("audience_id: 7", "audience_id: seven"), "segship.yaml:17:29",
     "exports.everyone-to-test.settings.audience_id must be an integer, not a string"),
    (("'${env:TESTDEST_TOKEN}'", "tok-literal-secret-1234"), "segship.yaml:11:23",
     "connections.test.settings.token is a secret: write a reference such as ${env:TESTDEST_TOKEN}"),
    (("{id: id, email: email}", "{id: id, email: id}"), "segship.yaml:18:30",
     "testdest needs the email and the id in different columns"),
], ids=["connection-settings", "export-settings", "secret", "check-export"])
def test_the_third_party_schemas_and_checks_are_enforced(cli, tmp_path: Path, change, where, message) -> None:
    old, new = change
    (tmp_path / "segship.yaml").write_text(TESTDEST_CONFIG.replace(old, new))
    result = cli("validate", "-c", "segship.yaml")
    assert result.exit_code == 2, result
    assert [line for line in result.stderr.splitlines() if line.startswith(f"{where}: {message}")], result
    assert "tok-literal-secret-1234" not in result.output


def test_the_third_party_command_is_registered(cli) -> None:
    result = cli("testdest-ping")
    assert result.exit_code == 0, result
    assert result.stdout == "testdest: pong\n"


def _plugin_names(result) -> list[str]:
    return [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")]


def test_load_plugins_variable_loads_only_the_named_plugins(cli) -> None:
    result = cli("plugins", env={"SEGSHIP_LOAD_PLUGINS": "testdest,braze"})
    assert result.exit_code == 0, result
    # built-ins always load
    assert _plugin_names(result) == ["duckdb", "postgres", "adbc", "notifiers", "braze", "testdest"]
    assert "testdest-broken" not in result.stderr  # not selected, so never imported


def test_load_plugins_variable_can_name_the_broken_plugin(cli) -> None:
    result = cli("plugins", env={"SEGSHIP_LOAD_PLUGINS": " testdest-broken , sendinblue "})
    assert result.exit_code == 0, result
    assert _plugin_names(result) == ["duckdb", "postgres", "adbc", "notifiers", "sendinblue"]
    assert BROKEN_WARNING in result.stderr


def test_load_plugins_variable_empty_loads_no_entry_point(cli, tmp_path: Path) -> None:
    result = cli("plugins", env={"SEGSHIP_LOAD_PLUGINS": ""})
    assert result.exit_code == 0, result
    assert _plugin_names(result) == ["duckdb", "postgres", "adbc", "notifiers"]
    (tmp_path / "segship.yaml").write_text(TESTDEST_CONFIG)
    result = cli("validate", "-c", "segship.yaml", env={"SEGSHIP_LOAD_PLUGINS": ""})
    assert result.exit_code == 2, result
    assert ("segship.yaml:8:11: connections.test.type must be one of (none installed); got 'testdest' "
            "(is the plugin installed? see `segship plugins`)") in result.stderr.splitlines(), result
