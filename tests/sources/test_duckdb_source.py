"""The ``duckdb`` source's own connection (``read``): its files, and nothing else of the machine."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from segship import embedded_duckdb
from segship.source import SourceContext, SourceError
from segship.sources.duckdb import DuckDBSource

PROFILES = "customer_id,email\nC1,one@example.com\nC2,two@example.com\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "2025.csv").write_text(PROFILES)
    (tmp_path / "data" / "2026.csv").write_text(PROFILES.replace("C1", "C3").replace("C2", "C4"))
    (tmp_path / "data" / "api.key").write_text("secret-key-beside-the-data")
    for name in ("mart", "other"):
        with duckdb.connect(str(tmp_path / f"{name}.duckdb")) as database:
            database.execute("CREATE TABLE customers AS SELECT 'C1' AS customer_id")
    return tmp_path


def rows(folder: Path, path: str, sql: str) -> list[dict]:
    source = DuckDBSource(SourceContext("crm", {"path": path}, folder))
    try:
        return source.read(sql).read_all().to_pylist()
    finally:
        source.close()


def test_a_glob_reads_every_file_it_matches(folder):
    assert [row["customer_id"] for row in rows(folder, "data/*.csv", "SELECT * FROM crm ORDER BY 1")] == \
        ["C1", "C2", "C3", "C4"]


def test_a_database_is_read_by_its_tables(folder):
    assert rows(folder, "mart.duckdb", "SELECT * FROM customers") == [{"customer_id": "C1"}]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_text('/proc/self/environ')",
    "SELECT * FROM read_csv('/etc/passwd', sep=':', header=false)",
    "SELECT * FROM read_text('{folder}/data/api.key')",        # beside the source's files
    "SELECT * FROM glob('{folder}/data/*')",
    "SET enable_external_access = true; SELECT * FROM read_text('/proc/self/environ')",
    "SET lock_configuration = false",
    "SET allowed_directories = ['/']",
    "INSTALL httpfs FROM 'http://127.0.0.1:9'",  # a repository nowhere: never the internet, locked or not
    "ATTACH '{folder}/other.duckdb' AS elsewhere",
    "COPY (SELECT 1 AS leaked) TO '{folder}/copied.csv'",
])
@pytest.mark.parametrize("path", ["data/*.csv", "mart.duckdb"])
def test_sql_reaching_beyond_the_source_fails_naming_it(folder, path, sql):
    with pytest.raises(SourceError, match="^source 'crm': .*(disabled by configuration|configuration has been locked)"):
        rows(folder, path, sql.format(folder=folder))
    assert not (folder / "copied.csv").exists()


def test_the_spill_folder_readable_is_the_connections_own_not_another_runs(folder, monkeypatch):
    monkeypatch.setattr(embedded_duckdb, "SPILL_DIRECTORY", folder / "spill")
    (folder / "spill").mkdir(mode=0o700)  # (the user's own: segship spills nowhere else)
    (folder / "spill" / "another-run").mkdir()
    (folder / "spill" / "another-run" / "rows.tmp").write_text("another export's spilled rows")
    for planted in ("spill/another-run/rows.tmp", "spill/*/*"):
        with pytest.raises(SourceError, match="disabled by configuration"):
            rows(folder, "data/*.csv", f"SELECT * FROM read_text('{folder / planted}')")
