"""An in-process destination for the engine's own tests: keeps what it is sent in memory.

It is registered into a real plugin manager (through the same hook as any plugin), so
the engine is exercised as with Braze or Brevo, minus HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segship import hookimpl
from segship.destination import Destination, Limits, Member, Record, RecordResult, RowRejected


class MemoryDestination(Destination):
    name = "memory"
    connection_schema = {"type": "object", "properties": {"api_key": {"type": "string", "x-secret": True}},
                         "additionalProperties": False}
    export_settings_schema = {"type": "object", "properties": {"batch_size": {"type": "integer"},
                                                               "list": {"type": "string", "default": "main"}},
                              "additionalProperties": False}
    target_settings = ("list",)
    mapping_schema = {"type": "object", "properties": {"id": {"type": "string"}, "email": {"type": "string"},
                                                       "fields": {"type": "object"}}, "required": ["id"]}

    #: what the "destination" holds: identity -> fields; shared so tests can inspect it
    profiles: dict[str, dict[str, Any]] = {}
    members: set[str] = set()
    calls: list[tuple[str, list[Any]]] = []
    refuse: set[str] = set()        # identities the destination refuses (to upsert or remove)
    fail_after_calls: int | None = None

    @classmethod
    def reset(cls) -> None:
        cls.profiles, cls.members, cls.calls, cls.refuse = {}, set(), [], set()
        cls.fail_after_calls = None

    @property
    def limits(self) -> Limits:
        return Limits(upsert_batch_size=int(self.export.settings.get("batch_size", 10)), remove_batch_size=7,
                      concurrency=2)

    async def check_connection(self) -> str:
        return "memory"

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        mapping = self.export.mapping
        identity = str(row[mapping["id"]])
        fields = {name: row[column] for name, column in mapping.get("fields", {}).items()
                  if changed_columns is None or column in changed_columns}
        if "email" in mapping:
            email = row[mapping["email"]]
            if not email or "@" not in email:
                raise RowRejected(f"invalid email {email!r}")
            fields["email"] = email
        return Record(key=identity, identity=identity, payload=(changed_columns is None, fields))

    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        cls = type(self)
        cls.calls.append(("upsert", [(r.identity, r.payload) for r in records]))
        if cls.fail_after_calls is not None and len(cls.calls) > cls.fail_after_calls:
            raise RuntimeError("destination went away")
        results = []
        for record in records:
            if record.identity in cls.refuse:
                results.append(RecordResult(record.key, "refused by the destination"))
                continue
            is_join, fields = record.payload
            cls.profiles.setdefault(record.identity, {}).update(fields)
            cls.members.add(record.identity)
            results.append(RecordResult(record.key))
        return results

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        cls = type(self)
        cls.calls.append(("remove", [m.identity for m in members]))
        results = []
        for member in members:
            if member.identity in cls.refuse:
                results.append(RecordResult(member.key, "refused by the destination"))
                continue
            cls.members.discard(member.identity)
            results.append(RecordResult(member.key))
        return results


@hookimpl
def segship_register_destinations(register) -> None:
    register(MemoryDestination)
