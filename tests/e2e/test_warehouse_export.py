"""Exports whose segments run in a database: the real CLI, the Braze and Brevo sandboxes.

Mostly the ``postgres`` source against the real PostgreSQL fixture server; its ``url``
comes from ``${env:WAREHOUSE_URL}`` and holds the server's password, which must never show
in output, reports or state. The ``adbc`` source is run with the SQLite driver.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segship.engine.state import open_state_at

from ..conftest import file_mode
from .conftest import LIST_ID, SEGMENT_ID

CONFIG = """
version: 1
state: {{path: .segship/state.db}}
sources:
  warehouse: {source}
segments:
  customers: {{source: warehouse, key: customer_id, sql: "{sql}"}}
connections:
  braze:
    type: braze
    display_name: Braze sandbox
    data_privacy_consent: true
    settings: {{api_key: "${{env:BRAZE_API_KEY}}", rest_endpoint: "${{env:BRAZE_URL}}"}}
  brevo:
    type: brevo
    display_name: Brevo sandbox
    data_privacy_consent: true
    settings: {{api_key: "${{env:BREVO_API_KEY}}", base_url: "${{env:BREVO_URL}}", process_poll_interval: 0.05}}
exports:
  to-braze:
    display_name: Customers to Braze
    connection: braze
    segments: [customers]
    settings: {{segment_api_identifier: {segment_id}}}
    mapping: {{customer_id: customer_id, email: email, attributes: {{{braze_attributes}}}}}
  to-brevo:
    display_name: Customers to Brevo
    connection: brevo
    segments: [customers]
    settings: {{list_id: {list_id}}}
    mapping: {{email: email, first_name: first_name, attributes: {{{brevo_attributes}}}}}
"""

#: every PostgreSQL type the issue names, with the attribute each is exported as
TYPED_COLUMNS = {
    "lifetime_value": "numeric(12,2)", "score": "numeric", "visits": "integer", "big": "bigint", "vip": "boolean",
    "note": "text", "signup": "date", "last_seen": "timestamp", "last_order": "timestamptz", "tags": "text[]",
    "codes": "integer[]", "profile": "jsonb", "prefs": "json",
}


class Warehouse:
    """A GitOps folder whose segment runs in PostgreSQL, and the CLI run against the sandboxes."""

    def __init__(self, root: Path, url: str, server, braze, brevo) -> None:
        self.root, self.url, self.server, self.braze, self.brevo = root, url, server, braze, brevo
        self.database = url.rsplit("/", 1)[1]
        (root / "tmp").mkdir()  # the runs' temporary folder, where their scratch folders are (TMPDIR)
        self.env = {**os.environ, "WAREHOUSE_URL": url, "BRAZE_API_KEY": braze.api_key, "BRAZE_URL": braze.url,
                    "BREVO_API_KEY": brevo.api_key, "BREVO_URL": brevo.url, "NO_COLOR": "1",
                    "TMPDIR": str(root / "tmp")}
        self.env.pop("SEGSHIP_ROLE", None)

    def configure(self, sql: str, attributes: list[str] | None = None,
                  source: str = '{type: postgres, url: "${env:WAREHOUSE_URL}"}') -> None:
        attributes = attributes or ["first_name"]
        (self.root / "segship.yaml").write_text(CONFIG.format(
            source=source, sql=sql, segment_id=SEGMENT_ID, list_id=LIST_ID,
            braze_attributes=", ".join(f"{a}: {a}" for a in attributes),
            brevo_attributes=", ".join(f"{a.upper()}: {a}" for a in attributes if a != "first_name")))

    def sql(self, statement: str) -> list[tuple]:
        return self.server.execute(statement, self.database)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "segship", *args], cwd=self.root, env=env or self.env,
                              capture_output=True, text=True, timeout=timeout)

    def acknowledged(self, export: str) -> set[str]:
        state = open_state_at(self.root / ".segship" / "state.db")
        try:
            return set(state.acknowledged(export).read_all().column("key").to_pylist())
        finally:
            state.close()

    def state_bytes(self) -> bytes:
        return b"".join(path.read_bytes() for path in (self.root / ".segship").glob("state.db*"))

    def assert_no_secret(self, *texts: str) -> None:
        password = self.server.password
        for text in texts:
            assert password not in text
        assert password.encode() not in self.state_bytes()


@pytest.fixture
def warehouse(tmp_path, postgres_server, postgres_url, braze_sandbox, sendinblue_sandbox) -> Warehouse:
    return Warehouse(tmp_path, postgres_url, postgres_server, braze_sandbox, sendinblue_sandbox)


def _customers(warehouse: Warehouse, count: int) -> None:
    warehouse.sql("CREATE TABLE customers (customer_id bigint, email text, first_name text, ltv integer)")
    warehouse.sql(f"INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'First' || g, g "
                  f"FROM generate_series(1, {count}) g")


def test_every_type_arrives_as_each_destinations_mapping_rules_expect(warehouse):
    columns = ", ".join(f"{name} {kind}" for name, kind in TYPED_COLUMNS.items())
    warehouse.sql(f"CREATE TABLE customers (customer_id bigint, email text, first_name text, {columns})")
    warehouse.sql("""INSERT INTO customers VALUES
        (1, 'zoe@example.com', 'Zoë', 1234.50, 98.6, 42, 9007199254740993, true, 'Zoë 日本 ✓', '2024-02-29',
         '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '{"a","b"}', '{1,2,3}',
         '{"tier": "gold", "n": 1}', '{"x": [1, 2]}'),
        (2, 'nulls@example.com', 'Null', 1000.00, NULL, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL)""")
    warehouse.configure("SELECT * FROM customers", ["first_name", *TYPED_COLUMNS])
    result = warehouse.cli("export", "--all", "--report", "report.json")
    assert result.returncode == 0, result.stderr

    zoe = warehouse.braze.user("1")
    assert {name: zoe[name] for name in TYPED_COLUMNS} == {
        "lifetime_value": 1234.5, "score": 98.6, "visits": 42, "big": 9007199254740993, "vip": True,
        "note": "Zoë 日本 ✓", "signup": "2024-02-29T00:00:00Z", "last_seen": "2024-01-02T03:04:05.123456Z",
        "last_order": "2024-01-02T01:04:05+00:00", "tags": ["a", "b"], "codes": ["1", "2", "3"],
        "profile": '{"n": 1, "tier": "gold"}', "prefs": '{"x": [1, 2]}'}  # JSON arrives as its text
    nulls = warehouse.braze.user("2")
    assert (nulls["first_name"], nulls["lifetime_value"], nulls["vip"]) == ("Null", 1000, False)
    assert not set(TYPED_COLUMNS) - {"lifetime_value", "vip"} & set(nulls)  # NULL stays NULL: nothing is set

    contacts = warehouse.brevo.list_contacts(LIST_ID)
    assert contacts["zoe@example.com"] == {
        "FIRSTNAME": "Zoë", "LIFETIME_VALUE": 1234.5, "SCORE": 98.6, "VISITS": 42, "BIG": 9007199254740993,
        "VIP": True, "NOTE": "Zoë 日本 ✓", "SIGNUP": "2024-02-29", "LAST_SEEN": "2024-01-02T03:04:05.123456",
        "LAST_ORDER": "2024-01-02T01:04:05+00:00", "TAGS": ["a", "b"], "CODES": ["1", "2", "3"],
        "PROFILE": '{"n": 1, "tier": "gold"}', "PREFS": '{"x": [1, 2]}'}
    assert contacts["nulls@example.com"] == {"FIRSTNAME": "Null", "LIFETIME_VALUE": 1000, "VIP": False}

    again = warehouse.cli("export", "--all", "--report", "again.json")  # the hashes of every type are stable
    assert again.returncode == 0, again.stderr
    report = json.loads((warehouse.root / "again.json").read_text())
    assert [(r["plan"]["unchanged"], r["http"]["requests"]) for r in report["exports"]] == [(2, 0), (2, 0)]
    warehouse.assert_no_secret(result.stdout, result.stderr, (warehouse.root / "report.json").read_text())


def test_a_segment_in_postgres_dialect_runs_in_postgres(warehouse):
    warehouse.sql("CREATE TABLE customers (customer_id bigint, email text, first_name text)")
    warehouse.sql("CREATE TABLE orders (customer_id bigint, amount text)")
    warehouse.sql("INSERT INTO customers VALUES (1, 'ann@example.com', 'Ann'), (2, 'bob@example.com', 'Bob'), "
                  "(3, 'ANNA@example.com', 'Anna'), (4, 'cy@example.com', 'Cy')")
    warehouse.sql("INSERT INTO orders VALUES (1, '600.50'), (1, '500'), (2, '2000'), (3, '1500'), (4, '10')")
    sql = ("WITH spend AS (SELECT customer_id, sum(amount::numeric) AS total FROM orders GROUP BY customer_id) "
           "SELECT c.customer_id, c.email, c.first_name, s.total FROM customers c "
           "JOIN spend s ON s.customer_id = c.customer_id WHERE c.email ILIKE 'ann%' AND s.total > 1000::numeric")
    warehouse.configure(sql, ["first_name", "total"])
    result = warehouse.cli("export", "to-braze")
    assert result.returncode == 0, result.stderr
    users = warehouse.braze.users()
    assert {uid: user["total"] for uid, user in users.items()} == {"1": 1100.5, "3": 1500}


def test_only_the_key_and_the_mapped_columns_leave_the_warehouse(warehouse):
    _customers(warehouse, 50)
    # no export maps ltv, and computing it fails on every row; the query ends in a comment and a semicolon
    warehouse.configure("SELECT customer_id, email, first_name, 1 / (ltv - ltv) AS ltv FROM customers -- all;")
    result = warehouse.cli("export", "--all")
    assert result.returncode == 0, result.stderr
    assert len(warehouse.braze.users()) == 50 and len(warehouse.brevo.list_contacts(LIST_ID)) == 50


def test_two_hundred_thousand_rows_stream_with_bounded_memory(warehouse):
    # 200 MB of rows (1 kB each): held whole, they would take the process past the bound
    warehouse.sql("CREATE TABLE customers AS SELECT g AS customer_id, 'user' || g || '@example.com' AS email, "
                  "'First' || g AS first_name, repeat('x', 1000) AS filler FROM generate_series(1, 200000) g")
    warehouse.configure("SELECT * FROM customers")
    # a dry run stages the segment once, then maps every row, but spends no time on HTTP. The child
    # reports its memory's high-water mark since its exec (VmHWM): ru_maxrss would be the test
    # process's own peak when that is higher, as Linux keeps it across the exec of a forked child
    probe = ("import atexit, runpy, sys; sys.argv = ['segship', 'export', 'to-braze', '--dry-run'];"
             "atexit.register(lambda: print('peak_kb', *[line.split()[1] for line in open('/proc/self/status') "
             "if line.startswith('VmHWM:')], file=sys.stderr)); runpy.run_module('segship', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=warehouse.root, env=warehouse.env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "would send 200000 upserts" in result.stdout
    peak_mb = int(result.stderr.rsplit("peak_kb", 1)[1].split()[0]) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB while streaming 200 MB of rows"


def test_a_wrong_password_fails_in_one_line_and_sends_nothing(warehouse):
    _customers(warehouse, 10)
    warehouse.configure("SELECT * FROM customers")
    env = {**warehouse.env, "WAREHOUSE_URL": warehouse.server.url(warehouse.database, password="not-the-password")}
    result = warehouse.cli("export", "to-braze", env=env)
    assert result.returncode == 1, result.stderr
    assert "password authentication failed" in result.stdout + result.stderr
    assert "not-the-password" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert warehouse.braze.stats().get("requests", 0) == 0


def test_a_server_that_is_down_fails_naming_the_source_and_sends_nothing(warehouse, own_postgres_server):
    own_postgres_server.stop()
    warehouse.configure("SELECT * FROM customers")
    env = {**warehouse.env, "WAREHOUSE_URL": own_postgres_server.url()}
    result = warehouse.cli("export", "to-braze", env=env)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "source 'warehouse'" in output and "Connection refused" in output
    assert own_postgres_server.password not in output and "Traceback" not in output
    assert warehouse.braze.stats().get("requests", 0) == 0


def test_an_unknown_table_fails_with_postgres_message_and_the_segments_place(warehouse):
    warehouse.configure("SELECT * FROM no_such_table")
    result = warehouse.cli("export", "to-braze")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert 'relation "no_such_table" does not exist' in output
    assert "segship.yaml:7:" in output and "segment 'customers'" in output  # where the segment is defined
    assert warehouse.braze.stats().get("requests", 0) == 0
    warehouse.assert_no_secret(output)


def test_null_and_duplicate_keys_are_refused_before_anything_is_sent(warehouse):
    _customers(warehouse, 5)
    warehouse.sql("INSERT INTO customers VALUES (3, 'again@example.com', 'Again', 3)")
    warehouse.configure("SELECT * FROM customers")
    duplicate = warehouse.cli("export", "to-braze")
    assert duplicate.returncode == 1 and "is not unique" in duplicate.stdout + duplicate.stderr
    warehouse.sql("DELETE FROM customers WHERE email = 'again@example.com'")
    warehouse.sql("INSERT INTO customers VALUES (NULL, 'nokey@example.com', 'No key', 0)")
    null = warehouse.cli("export", "to-braze")
    assert null.returncode == 1 and "null keys" in null.stdout + null.stderr
    assert warehouse.braze.stats().get("requests", 0) == 0


def test_a_key_in_two_segments_with_different_rows_is_refused(warehouse):
    _customers(warehouse, 5)
    warehouse.configure("SELECT * FROM customers WHERE customer_id <= 3")
    config = warehouse.root / "segship.yaml"
    text = config.read_text().replace(
        "segments:\n", "segments:\n  renamed: {source: warehouse, key: customer_id, sql: \"SELECT customer_id, email, "
                       "'Other' AS first_name FROM customers WHERE customer_id >= 3\"}\n", 1)
    config.write_text(text.replace("segments: [customers]", "segments: [customers, renamed]"))
    result = warehouse.cli("export", "to-braze")
    assert result.returncode == 1
    assert "key '3' is in segments 'customers' and 'renamed' with different rows" in result.stdout + result.stderr
    assert warehouse.braze.stats().get("requests", 0) == 0


def test_a_server_stopped_while_the_segment_streams_fails_the_plan_and_sends_nothing(
        tmp_path, own_postgres_server, braze_sandbox, sendinblue_sandbox):
    server = own_postgres_server
    warehouse = Warehouse(tmp_path, server.create_database(), server, braze_sandbox, sendinblue_sandbox)
    _customers(warehouse, 250_000)
    # the server stalls half-way through the result: half the rows have streamed out when it stops
    warehouse.configure("SELECT * FROM customers WHERE CASE WHEN customer_id = 125000 "
                        "THEN pg_sleep(60)::text = '' ELSE true END")
    process = subprocess.Popen([sys.executable, "-m", "segship", "export", "to-braze"], cwd=tmp_path,
                               env=warehouse.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not warehouse.sql("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'"):
        assert time.monotonic() < deadline and process.poll() is None, "the segment's query never reached the stall"
        time.sleep(0.05)
    server.stop()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "stopped while its rows were read" in out and "Traceback" not in out + err  # placed at the segment
    assert "segship.yaml:7:" in out and "segment 'customers'" in out
    assert server.password not in out + err
    assert braze_sandbox.stats().get("requests", 0) == 0  # the plan failed: nothing was sent
    assert warehouse.acknowledged("to-braze") == set()
    assert _scratch_folders(warehouse) == []  # the staged rows are gone with the failed run


def _scratch_folders(warehouse: Warehouse) -> list[Path]:
    """The snapshot scratch folders (staged segments, DuckDB's spill) below the runs' temporary folder."""
    return sorted((warehouse.root / "tmp" / f"segship-duckdb-{os.getuid()}").glob("snapshot-*"))


def _start_export(warehouse: Warehouse) -> subprocess.Popen:
    """``segship export to-braze`` in the background, returned once it has planned (sending starts next)."""
    process = subprocess.Popen([sys.executable, "-m", "segship", "export", "to-braze"], cwd=warehouse.root,
                               env=warehouse.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "export.planned" in line:
            return process
    raise AssertionError(f"the export ended without planning: {process.communicate(timeout=60)}")


def _seq_reads(warehouse: Warehouse, table: str) -> tuple[int, int]:
    """(sequential scans, rows they read) of ``table`` so far, once the server has counted every session's."""
    query = f"SELECT seq_scan, seq_tup_read FROM pg_stat_user_tables WHERE relname = '{table}'"
    counts, deadline = warehouse.sql(query)[0], time.monotonic() + 10
    while time.monotonic() < deadline:  # a session's counts arrive when it ends, a moment after its client
        time.sleep(0.5)
        again = warehouse.sql(query)[0]
        if again == counts:
            break
        counts = again
    return counts


def test_a_run_reads_its_segment_once_even_with_changes_to_send(warehouse):
    _customers(warehouse, 1000)
    warehouse.configure("SELECT * FROM customers")
    before = _seq_reads(warehouse, "customers")
    first = warehouse.cli("export", "to-braze")
    assert first.returncode == 0, first.stderr
    after_first = _seq_reads(warehouse, "customers")
    assert (after_first[0] - before[0], after_first[1] - before[1]) == (1, 1000)  # one scan: plan and send
    warehouse.sql("UPDATE customers SET first_name = 'Changed' WHERE customer_id = 7")
    updated = _seq_reads(warehouse, "customers")  # the UPDATE scanned the table too
    second = warehouse.cli("export", "to-braze", "--report", "second.json")
    assert second.returncode == 0, second.stderr
    after_second = _seq_reads(warehouse, "customers")
    assert (after_second[0] - updated[0], after_second[1] - updated[1]) == (1, 1000)
    export = json.loads((warehouse.root / "second.json").read_text())["exports"][0]
    assert (export["plan"]["update"], export["upserted"]) == (1, 1)
    assert warehouse.braze.user("7")["first_name"] == "Changed"
    assert _scratch_folders(warehouse) == []  # each run removed what it staged


def test_rows_changed_after_the_plan_are_sent_as_planned(warehouse):
    _customers(warehouse, 20)
    warehouse.configure("SELECT * FROM customers")
    warehouse.braze.set_faults(latency=2.0)  # the connection check holds the run between plan and send
    process = _start_export(warehouse)
    warehouse.sql("UPDATE customers SET first_name = 'Changed'")
    [folder] = _scratch_folders(warehouse)  # the staged segment, private to the run's user
    assert file_mode(folder) == 0o700
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    # what was sent is what was planned, and state holds its hashes: the change is the next run's
    assert {user["first_name"] for user in warehouse.braze.users().values()} == {f"First{i}" for i in range(1, 21)}
    warehouse.braze.set_faults(latency=0.0)
    following = warehouse.cli("export", "to-braze", "--report", "following.json")
    assert following.returncode == 0, following.stderr
    assert json.loads((warehouse.root / "following.json").read_text())["exports"][0]["plan"]["update"] == 20
    assert {user["first_name"] for user in warehouse.braze.users().values()} == {"Changed"}
    assert _scratch_folders(warehouse) == []


def test_a_server_stopped_once_sending_began_changes_nothing(tmp_path, own_postgres_server, braze_sandbox,
                                                             sendinblue_sandbox):
    server = own_postgres_server
    warehouse = Warehouse(tmp_path, server.create_database(), server, braze_sandbox, sendinblue_sandbox)
    _customers(warehouse, 3000)
    warehouse.configure("SELECT * FROM customers")
    braze_sandbox.set_faults(latency=0.5)
    process = _start_export(warehouse)
    server.stop()  # the segment was read once, by the plan: the send needs the server no more
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert warehouse.acknowledged("to-braze") == {str(i) for i in range(1, 3001)}
    assert len(braze_sandbox.users()) == 3000


def test_a_run_killed_mid_send_leaves_its_staged_rows_for_the_next_run_to_remove(warehouse):
    _customers(warehouse, 3000)
    warehouse.configure("SELECT * FROM customers")
    warehouse.braze.set_faults(latency=0.5)
    process = _start_export(warehouse)
    [left] = _scratch_folders(warehouse)
    process.kill()
    process.communicate(timeout=60)
    assert left.exists()  # kill -9: nothing could remove it
    old = time.time() - 3600
    os.utime(left, (old, old))  # left long ago (a folder just made may not be locked yet: it is spared)
    warehouse.braze.set_faults(latency=0.0)
    again = warehouse.cli("export", "to-braze")
    assert again.returncode == 0, again.stderr
    assert not left.exists() and _scratch_folders(warehouse) == []
    assert warehouse.acknowledged("to-braze") == {str(i) for i in range(1, 3001)}


def test_an_adbc_source_exports_through_the_sqlite_driver(warehouse):
    with sqlite3.connect(warehouse.root / "crm.sqlite") as db:
        db.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, first_name TEXT, ltv REAL)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                       [(i, f"user{i}@example.com", f"Ünïcode{i}", i * 10.5) for i in range(1, 201)])
    warehouse.configure("SELECT customer_id, email, first_name FROM customers WHERE ltv > 1000",
                        source='{type: adbc, driver: adbc_driver_sqlite, uri: "${env:LAKE_URI}"}')
    env = {**warehouse.env, "LAKE_URI": str(warehouse.root / "crm.sqlite")}
    result = warehouse.cli("export", "--all", env=env)
    assert result.returncode == 0, result.stderr
    assert set(warehouse.braze.users()) == {str(i) for i in range(96, 201)}
    assert warehouse.braze.user("150")["first_name"] == "Ünïcode150"
    assert len(warehouse.brevo.list_contacts(LIST_ID)) == 105
