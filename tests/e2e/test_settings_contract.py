"""The settings contract through the real CLI: a third-party destination (``probe``, installed for the
test as a distribution with an entry point) gets its schema's defaults at any depth, secrets marked
``x-secret`` deep inside its settings resolved in a run and redacted, and in ``plan`` and
``export --dry-run`` an ``UnresolvedSecret`` where a reference is, never the literal ``${env:…}``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

PROBE = '''
import json, os
import structlog
from segship import hookimpl
from segship.destination import Destination, Limits, Record, RecordResult

log = structlog.get_logger("probe")


def described(value):
    return {"type": type(value).__name__, "text": str(value)}


class ProbeDestination(Destination):
    name = "probe"
    connection_schema = {
        "type": "object", "additionalProperties": False, "required": ["auth"],
        "properties": {
            "batch_size": {"type": "integer", "default": 500},
            "auth": {"type": "object", "properties": {
                "token": {"type": "string", "x-secret": True},
                "scheme": {"type": "string", "default": "Bearer"}}},
            "headers": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "value": {"type": "string", "x-secret": True}}}},
        },
    }
    export_settings_schema = {"type": "object", "properties": {
        "paths": {"type": "object", "default": {}, "properties": {"upsert": {"type": "string", "default": "/members"}}}}}
    mapping_schema = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    limits = Limits(100, 100)

    def __init__(self, connection, export=None):
        super().__init__(connection, export)
        settings = self.connection.settings
        seen = {"batch_size": settings["batch_size"], "scheme": settings["auth"]["scheme"],
                "paths": self.export.settings["paths"] if self.export else None,
                "token": described(settings["auth"]["token"]),
                "header": described(settings["headers"][0]["value"]),
                "token_resolved": settings["auth"]["token"] == os.environ.get("PROBE_TOKEN")}
        with open(os.environ["PROBE_OUT"], "a") as out:
            out.write(json.dumps(seen) + "\\n")

    async def check_connection(self):
        return "probe: fine"

    def map(self, row, changed_columns=None):
        return Record(str(row[self.export.mapping["id"]]), str(row[self.export.mapping["id"]]), {})

    async def upsert(self, records):
        settings = self.connection.settings
        # a careless plugin logging its secrets: the core's redactor masks them
        log.info("probe.sent", note=f"token {settings['auth']['token']} header {settings['headers'][0]['value']}")
        return [RecordResult(record.key) for record in records]

    async def remove(self, members):
        return [RecordResult(member.key) for member in members]


@hookimpl
def segship_register_destinations(register):
    register(ProbeDestination)
'''

CONFIG = """
version: 1
sources:
  crm: {type: duckdb, path: people.csv}
segments:
  everyone: {source: crm, key: id, sql: SELECT * FROM crm}
connections:
  probe:
    type: probe
    display_name: Probe
    data_privacy_consent: true
    settings:
      auth: {token: "TOKEN"}
      headers: [{name: X-Probe, value: "HEADER"}]
exports:
  to-probe:
    display_name: Everyone to the probe
    connection: probe
    segments: [everyone]
    settings: {}
    mapping: {id: id}
"""
TOKEN = "probe-token-0123456789abcdef"
HEADER = "probe-header-fedcba9876543210"


@pytest.fixture
def probe(tmp_path: Path) -> dict[str, str]:
    """The probe distribution on PYTHONPATH (found through its entry point); the env the CLI runs with."""
    site = tmp_path / "site"
    (site / "probe_destination-1.0.dist-info").mkdir(parents=True)
    (site / "probe_destination.py").write_text(PROBE)
    (site / "probe_destination-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: probe-destination\nVersion: 1.0\n")
    (site / "probe_destination-1.0.dist-info" / "entry_points.txt").write_text(
        "[segship]\nprobe = probe_destination\n")
    (tmp_path / "people.csv").write_text("id\n1\n2\n3\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "PROBE_OUT": str(tmp_path / "seen.jsonl")}


def write(tmp_path: Path, token: str = "${env:PROBE_TOKEN}", header: str = "${file:header.txt}") -> None:
    (tmp_path / "segship.yaml").write_text(CONFIG.replace("TOKEN", token).replace("HEADER", header))
    (tmp_path / "header.txt").write_text(HEADER)


def seen(env: dict[str, str]) -> list[dict]:
    path = Path(env["PROBE_OUT"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_nested_secret_written_literally_is_refused_and_never_quoted(segship, probe, tmp_path):
    write(tmp_path, token=TOKEN, header=HEADER)
    result = segship("validate", env=probe)
    assert result.exit_code == 2, result
    assert "connections.probe.settings.auth.token is a secret" in result.output
    assert "connections.probe.settings.headers.0.value is a secret" in result.output
    assert TOKEN not in result.output and HEADER not in result.output


@pytest.mark.parametrize("command", [("plan",), ("export", "to-probe", "--dry-run")])
def test_plan_and_dry_run_hand_unresolved_secrets_and_the_defaults(segship, probe, tmp_path, command):
    write(tmp_path)
    result = segship(*command, env=probe)  # PROBE_TOKEN is not set: nothing is resolved
    assert result.exit_code == 0, result
    [first, *_] = seen(probe)
    assert first["token"] == {"type": "UnresolvedSecret", "text": "<not resolved: auth.token>"}
    assert first["header"] == {"type": "UnresolvedSecret", "text": "<not resolved: headers.0.value>"}
    assert (first["batch_size"], first["scheme"], first["paths"]) == (500, "Bearer", {"upsert": "/members"})


def test_a_run_resolves_nested_secrets_and_redacts_them_everywhere(segship, probe, tmp_path):
    write(tmp_path)
    result = segship("export", "to-probe", "--report", "report.json", env={**probe, "PROBE_TOKEN": TOKEN})
    assert result.exit_code == 0, result
    assert all(entry["token_resolved"] and entry["token"]["type"] == entry["header"]["type"] == "str"
               for entry in seen(probe))
    assert "token *** header ***" in result.output
    for text in (result.output, (tmp_path / "report.json").read_text()):
        assert TOKEN not in text and HEADER not in text
