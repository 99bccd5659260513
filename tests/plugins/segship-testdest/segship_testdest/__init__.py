"""``testdest``: a destination published outside segship, found through the ``segship`` entry point group.

It answers every record as accepted and remembers nothing: the tests only need its
registration, its schemas (composed into ``segship schema`` and used by ``segship
validate``) and its command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import typer
from segship import hookimpl
from segship.destination import ConfigProblem, Destination, Limits, Member, Record, RecordResult


class TestDestination(Destination):
    name = "testdest"
    connection_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "x-secret": True, "description": "testdest token, as ${env:VAR}."},
            "workspace": {"type": "string", "pattern": "^ws-[0-9]+$", "description": "Workspace ID, ws-<digits>."},
        },
        "required": ["token", "workspace"],
        "additionalProperties": False,
    }
    export_settings_schema: dict[str, Any] = {
        "type": "object",
        "properties": {"audience_id": {"type": "integer", "minimum": 1}},
        "required": ["audience_id"],
        "additionalProperties": False,
    }
    mapping_schema: dict[str, Any] = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "email": {"type": "string"}},
        "required": ["id"],
        "additionalProperties": False,
    }

    @classmethod
    def check_export(cls, connection_settings: Mapping[str, Any], export_settings: Mapping[str, Any],
                     mapping: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        if mapping.get("email") == mapping.get("id"):
            yield ConfigProblem(("mapping", "email"), "testdest needs the email and the id in different columns")

    @property
    def limits(self) -> Limits:
        return Limits(upsert_batch_size=100, remove_batch_size=100)

    async def check_connection(self) -> str:
        return "testdest: always fine"

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        identity = str(row[self.export.mapping["id"]])
        return Record(key=identity, identity=identity, payload=dict(row))

    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        return [RecordResult(record.key) for record in records]

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        return [RecordResult(member.key) for member in members]


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(TestDestination)


def testdest_ping() -> None:
    """Say that the testdest plugin's command was registered."""
    typer.echo("testdest: pong")


@hookimpl
def segship_register_commands(cli: typer.Typer, sandbox: typer.Typer) -> None:
    cli.command("testdest-ping")(testdest_ping)
