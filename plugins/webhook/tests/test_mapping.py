"""Mapping rules, answers and schemas: offline, no sandbox."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import jsonschema
import orjson
import pyarrow as pa
import pytest
from segship.destination import ConnectionContext, DestinationError, ExportContext, RowRejected
from segship.http import HttpResponse
from segship.secrets import UnresolvedSecret

from segship_webhook import schemas
from segship_webhook.destination import NotTheServicesAnswer, WebhookDestination, refusals, url_identity

MAPPING = {"identity": "customer_id", "fields": {"email": "email", "tier": "tier"}}


def destination(mapping: dict | None = None, settings: dict | None = None) -> WebhookDestination:
    return WebhookDestination(ConnectionContext("service", {"url": "https://members.example.com/segship/",
                                                            "secret": "whsec-0123456789"}),
                              ExportContext("vip", settings or {}, MAPPING if mapping is None else mapping))


def test_a_join_has_every_field_and_a_change_only_the_changed_ones():
    webhook = destination()
    row = {"customer_id": "C1", "email": "a@example.com", "tier": None}
    record = webhook.map(row)
    assert (record.identity, record.payload) == ("C1", {"email": "a@example.com", "tier": None})
    assert webhook.map(row, frozenset({"tier"})).payload == {"tier": None}
    assert webhook.map(row, frozenset({"lifetime_value"})).payload == {}


def test_the_defaults_are_filled_in():
    webhook = destination(mapping={"identity": "customer_id"})
    assert webhook.batch_size == 500 and webhook.limits.upsert_batch_size == 500
    assert webhook.map({"customer_id": 7}).payload == {}
    assert webhook.export.settings == {"upsert_path": "/members", "remove_path": "/members/remove"}
    assert WebhookDestination.target({}) == {"upsert_path": "/members", "remove_path": "/members/remove"}


@pytest.mark.parametrize(("value", "sent"), [
    ("text", "text"), (True, True), (12, 12), (1.5, 1.5), (None, None),
    (datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc), "2024-05-01T12:30:00+00:00"),
    (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
    (datetime.date(2024, 5, 1), "2024-05-01"), (datetime.time(8, 15), "08:15:00"),
    (datetime.timedelta(minutes=2), 120.0),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    ([1, "a", None], [1, "a", None]), ({"city": "Paris"}, {"city": "Paris"}),
])
def test_values_go_as_json_carries_them(value, sent):
    assert orjson.loads(orjson.dumps(destination().map({"customer_id": "C1", "tier": value}).payload)) == \
        {"email": None, "tier": sent}


def test_a_decimal_goes_as_its_exact_digits():
    payload = destination().map({"customer_id": "C1", "tier": Decimal("12345678901234567890.000000001")}).payload
    assert b'"tier":12345678901234567890.000000001' in orjson.dumps(payload)


@pytest.mark.parametrize(("value", "reason"), [
    (float("nan"), "tier is nan"), (float("inf"), "tier is inf"), (Decimal("NaN"), "tier is NaN"),
    (2**64, "tier is an integer past 64 bits"), (b"\x00", "tier holds bytes"), ([b"\x00"], "tier holds bytes"),
])
def test_what_json_cant_carry_refuses_the_row_naming_the_field(value, reason):
    with pytest.raises(RowRejected, match=reason):
        destination().map({"customer_id": "C1", "tier": value})


@pytest.mark.parametrize(("identity", "reason"), [(None, "is empty"), ("", "is empty"), (1.5, "holds float")])
def test_an_identity_is_text_or_an_integer(identity, reason):
    with pytest.raises(RowRejected, match=f"identity column customer_id {reason}"):
        destination().map({"customer_id": identity})
    assert destination().map({"customer_id": 42}).identity == "42"


def test_map_batch_gives_what_map_gives():
    webhook = destination()
    rows = [{"customer_id": "C1", "email": "a@example.com", "tier": "gold"},
            {"customer_id": None, "email": "b@example.com", "tier": "gold"}]
    mapped = webhook.map_batch(pa.RecordBatch.from_pylist(rows), [frozenset({"tier"}), None])
    assert mapped.identities[0] == "C1" and mapped.payloads[0] == {"tier": "gold"}
    assert mapped.rejects == {1: "identity column customer_id is empty"}


def answer(body: bytes, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(status, {"Content-Type": content_type}, body)


def test_an_empty_body_or_a_json_object_acknowledges_all_but_the_refused():
    assert refusals(answer(b""), 3) == {}
    assert refusals(answer(b'{"ok": true}'), 3) == {}
    assert refusals(answer(b'{"refused": [{"index": 2, "reason": " unknown "}, {"index": 0, "reason": "x"}]}'),
                    3) == {2: "unknown", 0: "x"}


@pytest.mark.parametrize("body", [
    b"<html>hi</html>", b"[]", b'"ok"', b'{"refused": {}}', b'{"refused": [{"index": 3, "reason": "x"}]}',
    b'{"refused": [{"index": -1, "reason": "x"}]}', b'{"refused": [{"index": "0", "reason": "x"}]}',
    b'{"refused": [{"index": 0, "reason": "x"}, {"index": 0, "reason": "y"}]}',
    b'{"refused": [{"index": 0}]}', b'{"refused": [{"index": 0, "reason": " "}]}', b'{"refused": [0]}',
])
def test_any_other_answer_acknowledges_nothing(body):
    with pytest.raises(NotTheServicesAnswer):
        refusals(answer(body), 3)


def test_the_url_identifies_the_service_however_written():
    assert url_identity("HTTPS://Members.Example.com/segship/") == "https://members.example.com/segship"
    assert WebhookDestination.instance_setting("url", "https://a.example.com/") == "https://a.example.com"


def test_a_dry_run_builds_it_with_an_unresolved_secret():
    webhook = WebhookDestination(ConnectionContext("service", {"url": "https://a.example.com",
                                                               "secret": UnresolvedSecret("secret")}),
                                 ExportContext("vip", {}, MAPPING))
    assert webhook.map({"customer_id": "C1", "email": "e", "tier": "t"}).identity == "C1"


def test_an_instance_without_a_mapping_only_removes():
    webhook = destination(mapping={})
    with pytest.raises(DestinationError, match="not bound to an export"):
        webhook.map({"customer_id": "C1"})


@pytest.mark.parametrize(("url", "valid"), [
    ("https://members.example.com", True), ("http://127.0.0.1:8080/segship/", True),
    ("https://user:pass@members.example.com", False), ("https://members.example.com?token=1", False),
    ("ftp://members.example.com", False), ("https://members.example.com\n", False),
])
def test_the_url_holds_no_credentials(url, valid):
    validator = jsonschema.Draft202012Validator(schemas.connection_schema)
    assert validator.is_valid({"url": url, "secret": "${env:SECRET}"}) is valid


def test_schemas_are_valid_and_allow_nothing_else():
    for schema in (schemas.connection_schema, schemas.export_settings_schema, schemas.mapping_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False
    assert jsonschema.Draft202012Validator(schemas.export_settings_schema).is_valid({})
