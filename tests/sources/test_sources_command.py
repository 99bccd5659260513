"""``segship sources test NAME``, the "Connect" button for a source: the real CLI against real databases."""

from __future__ import annotations

import sqlite3

import duckdb
import pytest

CONFIG = """
version: 1
sources:
  warehouse: {type: postgres, url: "${env:WAREHOUSE_URL}"}
  lake: {type: adbc, driver: adbc_driver_sqlite, uri: "${env:LAKE_URI}"}
  snowflake: {type: adbc, driver: adbc_driver_snowflake, uri: "${env:SNOWFLAKE_URI}"}
  files: {type: duckdb, path: profiles.csv}
"""


@pytest.fixture
def project(write_config, tmp_path):
    with sqlite3.connect(tmp_path / "lake.sqlite") as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    (tmp_path / "profiles.csv").write_text("customer_id,email\n1,a@example.com\n")
    return write_config({"segship.yaml": CONFIG})


def test_postgres_answers_with_its_version(segship, project, postgres_url):
    result = segship("sources", "test", "warehouse", env={"WAREHOUSE_URL": postgres_url})
    assert result.exit_code == 0, result
    assert result.stdout.startswith("warehouse: ok: PostgreSQL 16.")
    assert "driver: ADBC PostgreSQL Driver" in result.stdout


def test_sqlite_through_adbc_and_a_file_source(segship, project, tmp_path):
    lake = segship("sources", "test", "lake", env={"LAKE_URI": str(tmp_path / "lake.sqlite")})
    assert lake.exit_code == 0, lake
    assert lake.stdout.startswith("lake: ok: SQLite 3.")
    files = segship("sources", "test", "files")
    assert (files.exit_code, files.stdout) == (0, f"files: ok: DuckDB {duckdb.__version__}, "
                                                  f"{tmp_path / 'profiles.csv'}\n")


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong-password", "password authentication failed"),
    ("refused", "Connection refused"),
    ("unknown-host", "could not translate host name"),
])
def test_a_failed_connection_is_one_line_naming_the_source(case, expected, segship, project, postgres_server):
    password = "not-" + "the-password-9"
    url = {"wrong-password": postgres_server.url(password=password),
           "refused": f"postgresql://postgres:{password}@127.0.0.1:1/postgres",
           "unknown-host": f"postgresql://postgres:{password}@no-such-host.invalid/postgres"}[case]
    result = segship("sources", "test", "warehouse", env={"WAREHOUSE_URL": url})
    assert result.exit_code == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith("error: source 'warehouse': ") and expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert password not in result.output


def test_a_missing_driver_says_what_to_install(segship, project):
    result = segship("sources", "test", "snowflake", env={"SNOWFLAKE_URI": "user:secret@account/db"})
    assert result.exit_code == 1, result
    assert result.stderr == ("error: source 'snowflake': the ADBC driver package 'adbc_driver_snowflake' is not "
                             "installed (pip install adbc-driver-snowflake)\n")


def test_an_unset_secret_or_unknown_source_is_a_usage_error(segship, project):
    unset = segship("sources", "test", "warehouse")
    assert unset.exit_code == 2 and "environment variable WAREHOUSE_URL is not set" in unset.stderr
    assert "segship.yaml:3:" in unset.stderr  # where the reference is written
    unknown = segship("sources", "test", "nope")
    assert unknown.exit_code == 2 and "unknown source 'nope'" in unknown.stderr


def test_all_tests_every_source_and_fails_if_one_does(segship, project, tmp_path, postgres_url):
    env = {"WAREHOUSE_URL": postgres_url, "LAKE_URI": str(tmp_path / "lake.sqlite"), "SNOWFLAKE_URI": "user:x@a/db"}
    result = segship("sources", "test", "--all", env=env)
    assert result.exit_code == 1, result  # snowflake's driver is not installed; the others were tested anyway
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["warehouse", "lake", "files"], result
    assert all(": ok: " in line for line in result.stdout.splitlines()), result
    assert result.stderr.startswith("error: source 'snowflake': the ADBC driver package"), result
    assert result.stderr.count("\n") == 1

    fine = config_with_only(tmp_path, "files")
    passed = segship("sources", "test", "--all", "-c", str(fine))
    assert (passed.exit_code, passed.stdout) == (0, f"files: ok: DuckDB {duckdb.__version__}, "
                                                    f"{tmp_path / 'profiles.csv'}\n"), passed


def config_with_only(tmp_path, source: str):
    """A config with only one source of CONFIG."""
    only = tmp_path / "only.yaml"
    lines = CONFIG.splitlines()
    only.write_text("\n".join(line for line in lines if not line.startswith("  ") or f"  {source}:" in line) + "\n")
    return only


def test_a_name_or_all_but_not_both(segship, project):
    for args in ((), ("files", "--all")):
        result = segship("sources", "test", *args)
        assert result.exit_code == 2 and "name one source, or use --all" in result.stderr, result
