"""The settings contract: schema defaults filled in, unresolved secrets that can't pass for values,
``x-secret`` at any depth."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from segship.destination import ConnectionContext, Destination, ExportContext, Limits, Member, Record, RecordResult
from segship.http import HttpClient, SecretNotResolved
from segship.ratelimit import RateLimit
from segship.secrets import Redactor, UnresolvedSecret, holds_unresolved
from segship.settings import ANY, is_secret, secret_paths, values_at, with_defaults

SCHEMA = {
    "type": "object",
    "properties": {
        "url": {"type": "string"},
        "batch_size": {"type": "integer", "default": 500},
        "retry": {"type": "object", "default": {}, "properties": {
            "attempts": {"type": "integer", "default": 8},
            "backoff": {"type": "object", "properties": {"base": {"type": "number", "default": 0.5}}}}},
        "auth": {"type": "object", "properties": {"token": {"type": "string", "x-secret": True}}},
        "headers": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": "string", "x-secret": True}}}},
        "extra": {"type": "object", "additionalProperties": {"type": "string", "x-secret": True}},
        "options": {"type": "object", "x-secret": True, "additionalProperties": {"type": "string", "x-secret": True}},
    },
}


def test_defaults_fill_in_what_the_value_leaves_out_at_any_depth():
    assert with_defaults(SCHEMA, {"url": "u"}) == {"url": "u", "batch_size": 500, "retry": {"attempts": 8}}
    # what is given is kept; an object given gets the defaults below it
    assert with_defaults(SCHEMA, {"batch_size": 7, "retry": {"backoff": {}}}) == {
        "batch_size": 7, "retry": {"attempts": 8, "backoff": {"base": 0.5}}}
    assert with_defaults(SCHEMA, {"retry": {"attempts": 2, "backoff": {"base": 3}}})["retry"] == {
        "attempts": 2, "backoff": {"base": 3}}


def test_defaults_leave_the_value_and_the_schema_untouched():
    value = {"retry": {}}
    filled = with_defaults(SCHEMA, value)
    filled["retry"]["attempts"] = 99
    assert value == {"retry": {}}
    assert with_defaults(SCHEMA, {})["retry"] == {"attempts": 8} and SCHEMA["properties"]["retry"]["default"] == {}
    # a value of another type than the schema's (a reference where an object goes) is left as it is
    assert with_defaults(SCHEMA, {"retry": "${env:RETRY}"})["retry"] == "${env:RETRY}"
    assert with_defaults({"type": "object"}, {"a": 1}) == {"a": 1}


def test_secret_paths_are_found_in_nested_objects_arrays_and_mappings():
    assert secret_paths(SCHEMA) == [("auth", "token"), ("headers", ANY, "value"), ("extra", ANY), ("options",)]


@pytest.mark.parametrize(("path", "secret"), [
    (("auth", "token"), True), (("auth",), False), (("url",), False),
    (("headers", 0, "value"), True), (("headers", 3, "value"), True), (("headers", 0, "name"), False),
    (("extra", "X-Api-Key"), True), (("options", "password"), True), (("options",), True),
])
def test_a_path_is_secret_when_it_is_or_lies_in_a_secret(path, secret):
    assert is_secret(path, secret_paths(SCHEMA)) is secret


def test_values_at_expands_every_item_and_entry():
    settings = {"headers": [{"name": "a", "value": 1}, {"name": "b"}, {"name": "c", "value": 3}],
                "extra": {"x": "1", "y": "2"}}
    assert list(values_at(settings, ("headers", ANY, "value"))) == [(("headers", 0, "value"), 1),
                                                                    (("headers", 2, "value"), 3)]
    assert dict(values_at(settings, ("extra", ANY))) == {("extra", "x"): "1", ("extra", "y"): "2"}
    assert list(values_at(settings, ("auth", "token"))) == []


def test_an_unresolved_secret_reads_as_not_resolved_and_is_no_string():
    secret = UnresolvedSecret("auth.token")
    assert str(secret) == f"{secret}" == "<not resolved: auth.token>" and holds_unresolved(f"Bearer {secret}")
    assert "${" not in repr(secret)
    with pytest.raises(TypeError):
        "Bearer " + secret  # noqa: B018 - the point: no accidental string
    with pytest.raises(AttributeError):
        secret.strip()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        orjson.dumps({"token": secret})
    with pytest.raises(TypeError):
        int(secret)  # type: ignore[arg-type]


def test_the_redactor_never_masks_the_words_not_resolved():
    redactor = Redactor()
    secret = UnresolvedSecret("api_key")
    redactor.add(secret)  # type: ignore[arg-type]
    redactor.add(str(secret))
    assert redactor.redact(f"api_key is {secret}") == "api_key is <not resolved: api_key>"


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {UnresolvedSecret('api_key')}"},
                                     {"api-key": UnresolvedSecret("api_key")}])
def test_a_client_is_built_with_an_unresolved_secret_but_refuses_to_send_it(headers):
    async def send() -> None:
        client = HttpClient("http://127.0.0.1:9", headers, rate_limit=RateLimit(10, 1.0))
        try:
            await client.request("POST", "/members", json={})
        finally:
            await client.close()

    with pytest.raises(SecretNotResolved, match="was not sent: .* did not resolve"):
        asyncio.run(send())


class Probe(Destination):
    name = "probe"
    connection_schema = SCHEMA
    export_settings_schema = {"type": "object", "properties": {"path": {"type": "string", "default": "/members"}}}
    mapping_schema = {"type": "object", "properties": {"fields": {"type": "object", "default": {}}}}

    limits = Limits(100, 100)

    async def check_connection(self) -> str:
        return "fine"

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        return Record("", "", row)

    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        return []

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        return []


def test_a_destination_sees_its_schemas_defaults_however_it_was_built():
    connection = ConnectionContext("c", {"url": "u"})
    export = ExportContext("e", {}, {"identity": "id"})
    probe = Probe(connection, export)
    assert probe.connection.settings == {"url": "u", "batch_size": 500, "retry": {"attempts": 8}}
    assert probe.export.settings == {"path": "/members"} and probe.export.mapping == {"identity": "id", "fields": {}}
    assert connection.settings == {"url": "u"} and export.settings == {}  # the contexts given are not changed
    assert Probe(connection).export is None
