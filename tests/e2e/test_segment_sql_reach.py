"""A segment's SQL reads its own source's files and nothing else, whatever it asks for.

Whoever can commit to the config repository writes segment SQL, and it runs where the
secrets are: an admin's environment, the files of ``${file:…}`` keys. Every attempt to
reach beyond the source fails in `segship plan`, `segship export` and `export --dry-run`,
placed at the segment; nothing is sent and no secret is in any output.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

ENV_SECRET = "env-secret-canary-7d1f0c"  # in the environment of every run, as an admin's keys are
SEGMENT_PLACE = "segship.yaml:6:5: segment 'vip' failed: source 'crm': "
NO_FILE_ACCESS = "file system operations are disabled by configuration"
ONE_QUERY = "a segment's SQL must be one query"

CONFIG = """\
version: 1
sources:
  crm: {{type: duckdb, path: {path}}}
segments:
  vip:
    source: crm
    key: customer_id
    sql: |
      {sql}
connections:
  braze: {{type: braze, display_name: Braze, usable_by: [admins], data_privacy_consent: true,
          settings: {{api_key: "${{file:keys/braze.key}}", rest_endpoint: "${{env:BRAZE_URL}}"}}}}
exports:
  vip-braze:
    display_name: VIP to Braze
    connection: braze
    segments: [vip]
    settings: {{segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001, membership_attribute: segments}}
    mapping: {{customer_id: customer_id, email: email, attributes: {{first_name: first_name}}}}
"""
PROFILES = "customer_id,email,first_name\nC1,one@example.com,Ann\nC2,two@example.com,Bob\n"

# a mapped attribute made of what the SQL reaches: sent to the destination if it were read
REACHES = {
    "the environment": ("SELECT customer_id, email, (SELECT content FROM read_text('/proc/self/environ')) "
                        "AS first_name FROM crm", NO_FILE_ACCESS),
    # DuckDB's cast error quotes the value: the whole environment, printed by `plan` on a pull request
    "a cast error quoting the environment": (
        "SELECT customer_id, email, CAST((SELECT content FROM read_text('/proc/self/environ')) AS INTEGER) "
        "AS first_name FROM crm", NO_FILE_ACCESS),
    "a ${file:} secret": ("SELECT customer_id, email, (SELECT content FROM read_text('{root}/keys/braze.key')) "
                          "AS first_name FROM crm", NO_FILE_ACCESS),
    "a file of the machine": ("SELECT customer_id, email, (SELECT string_agg(column0, ',') FROM "
                              "read_csv('/etc/passwd', sep=':', header=false)) AS first_name FROM crm",
                              NO_FILE_ACCESS),
    "the list of the secrets": ("SELECT customer_id, email, (SELECT string_agg(file, ',') FROM glob('{root}/keys/*')) "
                                "AS first_name FROM crm", NO_FILE_ACCESS),
    "another database": ("SELECT customer_id, email, first_name FROM crm UNION ALL "
                         "SELECT customer_id, email, first_name FROM read_parquet('{root}/elsewhere.parquet')",
                         NO_FILE_ACCESS),
    "a setting": ("SET enable_external_access = true", ONE_QUERY),
    "an extension installed": ("INSTALL httpfs", ONE_QUERY),
    "an extension loaded": ("LOAD httpfs", ONE_QUERY),
    "an attached database": ("ATTACH '{root}/elsewhere.duckdb' AS elsewhere", ONE_QUERY),
    "a file written": ("COPY (SELECT 1 AS leaked) TO '{root}/copied.csv'", ONE_QUERY),
}
COMMANDS = (("plan",), ("export", "vip-braze", "--dry-run"), ("export", "vip-braze"))


@pytest.fixture
def project(write_config, braze_sandbox):  # noqa: ANN001, ANN201 - fixtures
    """A config folder: profiles, the Braze key in a ${file:} secret, and a database and a Parquet file
    beside them that no segment's source names."""

    def write(sql: str, path: str = "profiles.csv") -> Path:
        root = write_config({"profiles.csv": PROFILES, "keys/braze.key": braze_sandbox.api_key})
        with duckdb.connect(str(root / "elsewhere.duckdb")) as other:
            other.execute("CREATE OR REPLACE TABLE customers AS SELECT 'C9' AS customer_id, 'x@example.com' AS "
                          "email, 'Other' AS first_name")
            other.execute(f"COPY customers TO '{root / 'elsewhere.parquet'}'")
        (root / "segship.yaml").write_text(CONFIG.format(path=path, sql=sql.format(root=root)))
        return root

    return write


def run(segship, braze_sandbox, *args: str):  # noqa: ANN001, ANN201
    return segship(*args, env={"BRAZE_URL": braze_sandbox.url, "WAREHOUSE_PASSWORD": ENV_SECRET})


def test_a_segment_of_its_own_source_is_planned_and_sent(project, segship, braze_sandbox):
    project("SELECT * FROM crm")
    assert run(segship, braze_sandbox, "plan").exit_code == 0
    result = run(segship, braze_sandbox, "export", "vip-braze")
    assert result.exit_code == 0, result
    assert set(braze_sandbox.users()) == {"C1", "C2"}


@pytest.mark.parametrize(("sql", "refusal"), REACHES.values(), ids=REACHES.keys())
def test_a_segment_reaching_beyond_its_source_fails_placed_and_sends_nothing(project, segship, braze_sandbox,
                                                                           sql, refusal):
    root = project(sql)
    for command in COMMANDS:
        result = run(segship, braze_sandbox, *command)
        assert result.exit_code == 1, result
        assert SEGMENT_PLACE in result.output and refusal in result.output, result
        assert ENV_SECRET not in result.output and braze_sandbox.api_key not in result.output, result
    assert braze_sandbox.stats().get("requests", 0) == 0
    assert not (root / "copied.csv").exists()


def test_a_glob_source_reads_the_files_it_matches_and_not_the_secret_beside_them(write_config, segship,
                                                                               braze_sandbox):
    root = write_config({"data/2025.csv": PROFILES, "data/2026.csv": PROFILES.replace("C1", "C3").replace("C2", "C4"),
                         "data/braze.key": braze_sandbox.api_key})
    config = CONFIG.replace("keys/braze.key", "data/braze.key")
    (root / "segship.yaml").write_text(config.format(path="data/*.csv", sql="SELECT * FROM crm"))
    planned = run(segship, braze_sandbox, "plan", "--format", "json")
    assert planned.exit_code == 0, planned
    assert '"add": 4' in planned.stdout

    reading = REACHES["a ${file:} secret"][0].format(root=root).replace("keys/", "data/")
    (root / "segship.yaml").write_text(config.format(path="data/*.csv", sql=reading))
    refused = run(segship, braze_sandbox, "plan")
    assert refused.exit_code == 1 and SEGMENT_PLACE in refused.output and NO_FILE_ACCESS in refused.output, refused
    assert braze_sandbox.api_key not in refused.output


def test_a_database_source_reads_its_tables_and_no_file(project, segship, braze_sandbox):
    root = project(REACHES["the environment"][0].replace("FROM crm", "FROM customers"), path="elsewhere.duckdb")
    refused = run(segship, braze_sandbox, "plan")
    assert refused.exit_code == 1 and SEGMENT_PLACE in refused.output and NO_FILE_ACCESS in refused.output, refused
    assert ENV_SECRET not in refused.output

    (root / "segship.yaml").write_text(CONFIG.format(path="elsewhere.duckdb", sql="SELECT * FROM customers"))
    planned = run(segship, braze_sandbox, "plan", "--format", "json")
    assert planned.exit_code == 0 and '"add": 1' in planned.stdout, planned
