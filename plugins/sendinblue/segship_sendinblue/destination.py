"""The ``sendinblue`` destination (alias ``brevo``): members are imported into a Brevo list.

Joins and changes go through ``POST /contacts/import`` (asynchronous; the process is
polled until it completes), leavers through ``POST /contacts/lists/{id}/contacts/remove``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segship.destination import (
    ConfigProblem,
    Destination,
    Limits,
    Member,
    Record,
    RecordResult,
)

from segship_sendinblue import schemas


class SendinblueDestination(Destination):
    name = "sendinblue"
    aliases = ("brevo",)
    connection_schema = schemas.connection_schema
    export_settings_schema = schemas.export_settings_schema
    mapping_schema = schemas.mapping_schema

    @classmethod
    def check_export(cls, connection_settings: Mapping[str, Any], export_settings: Mapping[str, Any],
                     mapping: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        names = {**schemas.DEFAULT_ATTRIBUTE_NAMES, **export_settings.get("attribute_names", {})}
        # attribute -> where it is set, to find two mapping entries writing the same attribute
        written: dict[str, tuple[str | int, ...]] = {}
        targets = [(names[field], ("mapping", field)) for field in ("first_name", "last_name", "phone")
                   if field in mapping]
        targets += [(attribute, ("mapping", "attributes", attribute)) for attribute in mapping.get("attributes", {})]
        for attribute, path in targets:
            if attribute.upper() == "EMAIL":
                yield ConfigProblem(path, "EMAIL identifies the contact: map it with mapping.email, "
                                          "not as an attribute")
            elif attribute.upper() in written:
                other = ".".join(map(str, written[attribute.upper()]))
                yield ConfigProblem(path, f"Brevo attribute {attribute} is already set by {other}; "
                                          "map each attribute once")
            else:
                written[attribute.upper()] = path

    @property
    def limits(self) -> Limits:
        raise NotImplementedError

    async def check_connection(self) -> str:
        raise NotImplementedError

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        raise NotImplementedError

    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        raise NotImplementedError

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        raise NotImplementedError
