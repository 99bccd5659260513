"""End-to-end fixtures: the real CLI (a subprocess), real DuckDB files, real sandboxes on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segship.engine.state import StateStore, open_state_at

from ..conftest import StateTarget

SEGMENT_ID = "3c4a9e52-0000-4000-8000-000000000001"
LIST_ID = 3
COLUMNS = ["customer_id", "email", "first_name", "last_name", "phone", "lifetime_value"]
#: The profiles as a warehouse table (the ``warehouse`` variant): the types DuckDB reads the CSV as.
WAREHOUSE_TYPES = {"customer_id": "text", "email": "text", "first_name": "text", "last_name": "text", "phone": "text",
                   "lifetime_value": "bigint"}
CSV_SOURCE = "{type: duckdb, path: profiles.csv}"
WAREHOUSE_SOURCE = '{type: postgres, url: "${env:WAREHOUSE_URL}", planner: {schema: segship}}'
#: The same table streamed to the local planner (the ``streamed`` variant).
STREAMED_SOURCE = '{type: postgres, url: "${env:WAREHOUSE_URL}"}'

CONFIG = """
version: 1
state: {state}
sources:
  crm: {source}
segments:
  vip: {{source: crm, key: customer_id, sql: "SELECT * FROM crm WHERE lifetime_value > 100"}}
connections:
  braze:
    type: braze
    display_name: Braze sandbox
    usable_by: [admins]
    data_privacy_consent: true
    settings: {{api_key: "${{env:BRAZE_API_KEY}}", rest_endpoint: "${{env:BRAZE_URL}}", batch_size: {braze_batch}}}
  brevo:
    type: brevo                           # the alias of sendinblue: resolves to the same plugin
    display_name: Brevo sandbox
    usable_by: [admins, contributors]
    data_privacy_consent: true
    settings:
      api_key: "${{env:BREVO_API_KEY}}"
      base_url: "${{env:BREVO_URL}}"
      process_poll_interval: 0.05
exports:
  vip-braze:
    display_name: VIP to Braze
    connection: braze
    segments: [vip]
    settings: {{segment_api_identifier: {segment_id}, membership_attribute: {membership_attribute}}}
    mapping: {{customer_id: customer_id, email: email, attributes: {{first_name: first_name, last_name: last_name}}}}
    safeguards: {{max_removed_fraction: {max_removed}}}
  vip-brevo:
    display_name: VIP to Brevo
    connection: brevo
    segments: [vip]
    settings: {{list_id: {list_id}}}
    mapping: {{email: email, first_name: first_name, last_name: last_name, phone: phone}}
    safeguards: {{max_removed_fraction: {max_removed}}}
"""


def profile(index: int, **changes: object) -> dict[str, object]:
    row = {"customer_id": f"C{index:05d}", "email": f"user{index}@example.com", "first_name": f"First{index}",
           "last_name": f"Last{index}", "phone": f"+3361234{index:04d}", "lifetime_value": 500}
    row.update(changes)
    return row


class Project:
    """A GitOps folder in tmp: a config pointing at the sandboxes, a CSV source, and the CLI."""

    def __init__(self, root: Path, braze, brevo, state: StateTarget) -> None:
        self.root = root
        self.braze = braze
        self.brevo = brevo
        self.state_target = state
        self.env = {**os.environ, "BRAZE_API_KEY": braze.api_key, "BRAZE_URL": braze.url,
                    "BREVO_API_KEY": brevo.api_key, "BREVO_URL": brevo.url, "NO_COLOR": "1", **state.env}
        self.env.pop("SEGSHIP_ROLE", None)
        self.configure()

    def configure(self, *, braze_batch: int = 75, max_removed: float = 1.0, segment_id: str = SEGMENT_ID,
                  membership_attribute: str = "segship_segments", list_id: int = LIST_ID) -> None:
        source = CSV_SOURCE if not self.state_target.warehouse else \
            WAREHOUSE_SOURCE if self.state_target.planned else STREAMED_SOURCE
        (self.root / "segship.yaml").write_text(CONFIG.format(
            state=self.state_target.yaml, source=source, braze_batch=braze_batch, segment_id=segment_id, list_id=list_id,
            max_removed=max_removed, membership_attribute=membership_attribute))

    def write(self, rows: list[dict[str, object]]) -> None:
        with (self.root / "profiles.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        if self.state_target.warehouse:
            self.state_target.load("crm", rows, WAREHOUSE_TYPES)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "segship", "--log-format", "json", *args]

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=self.root, env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)

    def state(self) -> StateStore:
        """The project's state, SQLite file or PostgreSQL database, through the state contract."""
        return open_state_at(self.state_target.state_location(self.root))

    def acknowledged(self, export: str) -> set[str]:
        """Keys the state says the destination acknowledged (the ``warehouse`` variant: its planner schema's)."""
        if self.state_target.planner:
            import adbc_driver_postgresql.dbapi as postgresql

            with postgresql.connect(self.state_target.planner) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass('segship.segship_members') IS NOT NULL")
                if not cursor.fetchone()[0]:  # no run made it yet
                    return set()
                cursor.execute("SELECT key FROM segship.segship_members WHERE export = $1", (export,))
                return {row[0] for row in cursor.fetchall()}
        state = self.state()
        try:
            return set(state.acknowledged(export).read_all().column("key").to_pylist())
        finally:
            state.close()

    def braze_members(self) -> dict[str, dict]:
        """Braze users whose membership attribute holds the export's segment identifier."""
        return {uid: user for uid, user in self.braze.users().items()
                if SEGMENT_ID in (user.get("segship_segments") or [])}

    def brevo_members(self) -> set[str]:
        return set(self.brevo.list_contacts(LIST_ID))


@pytest.fixture
def project(tmp_path: Path, braze_sandbox, sendinblue_sandbox, state_target) -> Project:
    """A project on each state backend in turn."""
    return Project(tmp_path, braze_sandbox, sendinblue_sandbox, state_target)


def accept_identity_conflicts(project: Project, export: str) -> None:
    """Set ``identity_conflicts: first`` on one of the project's exports (keys sharing an identity:
    the lowest is sent)."""
    config = project.root / "segship.yaml"
    text = config.read_text()
    anchor = f"  {export}:\n"
    assert anchor in text
    config.write_text(text.replace(anchor, f"{anchor}    identity_conflicts: first\n"))
