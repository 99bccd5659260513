"""The mapping rules, the schemas and the export checks: no network."""

from __future__ import annotations

import datetime
from decimal import Decimal

import jsonschema
import orjson
import pyarrow as pa
import pytest
from segship.destination import ConnectionContext, ExportContext, RowRejected
from segship.settings import with_defaults

from segship_sendinblue.destination import SendinblueDestination
from segship_sendinblue.mapping import ContactMapping, normalize_email, normalize_phone, phone_region
from segship_sendinblue.schemas import DEFAULT_MAX_PROFILES, export_settings_schema


def export_settings(settings):
    """Export settings as a destination gets them: the schema's defaults filled in."""
    return with_defaults(export_settings_schema, settings)


def contact_and_dropped(row, settings=None, mapping=None):
    mapping = mapping or {"email": "email", "first_name": "first", "last_name": "last", "phone": "phone",
                          "attributes": {"TIER": "tier"}}
    return ContactMapping.from_config(export_settings({"list_id": 1, **(settings or {})}), mapping).contact(row)


def contact_of(row, settings=None, mapping=None):
    """The contact of a row whose every value Brevo takes."""
    contact, dropped = contact_and_dropped(row, settings, mapping)
    assert dropped == ()
    return contact


def test_email_is_trimmed_and_lower_cased_and_attributes_use_default_names():
    contact = contact_of({"email": "  Ada.Lovelace@Example.COM ", "first": "Ada", "last": "Lovelace",
                          "phone": "+44 7911 123456", "tier": "gold"})
    assert contact == {"email": "ada.lovelace@example.com",
                       "attributes": {"FIRSTNAME": "Ada", "LASTNAME": "Lovelace", "TIER": "gold",
                                      "SMS": "+447911123456"}}


@pytest.mark.parametrize("column", ["emailBlacklisted", "smsBlacklisted", "emailBlacklist", "smsBlacklist",
                                    "EMAIL_BLACKLISTED", "blocklisted"])
def test_a_contact_carries_only_its_email_and_mapped_attributes_never_its_blocklisting(column):
    # a column of the segment named like Brevo's consent fields is not sent unless mapped
    row = {"email": "a@b.fr", "first": "Ada", "last": None, "phone": None, "tier": "gold", column: True}
    assert contact_of(row) == {"email": "a@b.fr", "attributes": {"FIRSTNAME": "Ada", "TIER": "gold"}}
    rows = pa.RecordBatch.from_pylist([row, {**row, "email": "c@d.fr", column: False}])
    mapping = ContactMapping.from_config(export_settings({"list_id": 1}), {"email": "email", "first_name": "first",
                                                          "attributes": {"TIER": "tier"}})
    contacts, rejects, dropped = mapping.contacts(rows)
    assert not rejects and not dropped and [set(contact) for contact in contacts] == [{"email", "attributes"}] * 2
    assert all(set(contact["attributes"]) == {"FIRSTNAME", "TIER"} for contact in contacts)


def test_localized_attribute_names():
    contact = contact_of({"email": "a@b.fr", "first": "Ada", "last": "L", "phone": None, "tier": None},
                         settings={"attribute_names": {"first_name": "PRENOM", "last_name": "NOME"}})
    assert contact == {"email": "a@b.fr", "attributes": {"PRENOM": "Ada", "NOME": "L"}}


@pytest.mark.parametrize("email", ["", "   ", None, "no-at-sign", "a@b", "a b@example.com", "a@@example.com",
                                   "a@example.c", 42, "x" * 250 + "@example.com"])
def test_invalid_emails_are_rejected_with_a_reason(email):
    with pytest.raises(RowRejected) as refused:
        normalize_email(email)
    assert "email" in refused.value.reason


@pytest.mark.parametrize("written, code, expected", [
    ("+33 6 12 34 56 78", None, "+33612345678"),
    ("0033 (6) 12-34-56-78", None, "+33612345678"),
    ("06 12 34 56 78", "+33", "+33612345678"),
    ("612345678", "33", "+33612345678"),
    (612345678, "+33", "+33612345678"),
    ("+1 (415) 555-0100", "+33", "+14155550100"),
])
def test_phones_get_their_country_code(written, code, expected):
    assert normalize_phone(written, phone_region(code)) == expected


@pytest.mark.parametrize("written, code, expected", [
    ("020 7946 0018", "+44", "+442079460018"),        # the UK's trunk 0
    ("(415) 555-0100", "+1", "+14155550100"),         # no trunk prefix in the US
    ("8 (912) 345-67-89", "+7", "+79123456789"),      # Russia's trunk 8
    ("+44 (0)20 7946 0018", "+33", "+442079460018"),  # a trunk 0 written after the country code
    ("011 33 6 12 34 56 78", "+1", "+33612345678"),   # the US's international prefix
])
def test_national_trunk_and_international_prefixes_are_the_countrys(written, code, expected):
    assert normalize_phone(written, phone_region(code)) == expected


def test_phone_without_country_code_is_rejected_unless_a_default_is_set():
    with pytest.raises(RowRejected, match="no country code.*default_country_code"):
        normalize_phone("06 12 34 56 78", None)


@pytest.mark.parametrize("written", ["+33 6 CALL ME", "+12345", "+1234567890123456", "+0612345678", 3.5, True,
                                     "n/a", "(555) 001-0001", "+336123456789", "+1 555 001 0001"])
def test_invalid_phones_are_rejected(written):
    with pytest.raises(RowRejected, match="phone"):
        normalize_phone(written, phone_region("+33"))


def test_a_us_number_read_with_a_french_default_is_invalid_not_a_french_number():
    # the example: written without its country code, it is no valid French number
    with pytest.raises(RowRejected, match=r"invalid phone number '\(555\) 001-0001': no valid \+33 number"):
        normalize_phone("(555) 001-0001", phone_region("+33"))


@pytest.mark.parametrize("code, region", [("+33", "FR"), ("33", "FR"), ("+1", "US"), ("+44", "GB"), ("+7", "RU"),
                                          (None, None), ("+999", None), ("+800", None)])
def test_the_default_region_is_the_main_country_of_the_calling_code(code, region):
    assert phone_region(code) == region


@pytest.mark.parametrize("phone", ["n/a", "(555) 001-0001", "0612", {"not": "a phone"}])
def test_an_invalid_phone_is_dropped_and_the_contact_sent_without_it(phone):
    row = {"email": "a@b.fr", "first": "Ada", "last": None, "phone": phone, "tier": "gold"}
    contact, dropped = contact_and_dropped(row, settings={"default_country_code": "+33"})
    assert contact == {"email": "a@b.fr", "attributes": {"FIRSTNAME": "Ada", "TIER": "gold"}}
    [field] = dropped
    assert field.column == "phone" and "phone" in field.reason


def test_an_attribute_brevo_cant_store_is_dropped_and_the_contact_sent_without_it():
    row = {"email": "a@b.fr", "first": "Ada", "last": None, "phone": "+33612345678", "tier": 2**70}
    contact, dropped = contact_and_dropped(row)
    assert contact == {"email": "a@b.fr", "attributes": {"FIRSTNAME": "Ada", "SMS": "+33612345678"}}
    assert [tuple(field) for field in dropped] == [("tier", f"TIER is {2**70}, a number too large for a Brevo "
                                                             "attribute")]


def test_a_default_country_code_of_no_country_is_a_config_problem():
    problems = list(SendinblueDestination.check_export({}, export_settings({"list_id": 1, "default_country_code": "+999"}),
                                                       {"email": "email"}))
    assert [(problem.path, "+999 is no country's calling code" in problem.message) for problem in problems] == [
        (("settings", "default_country_code"), True)]


def test_values_are_sent_as_brevo_takes_them():
    mapping = {"email": "email", "attributes": {"SPEND": "spend", "VISITS": "visits", "SINCE": "since",
                                                "SEEN": "seen", "VIP": "vip", "TAGS": "tags", "NOTE": "note"}}
    contact = contact_of({"email": "a@b.co", "spend": Decimal("12.50"), "visits": Decimal("3"),
                          "since": datetime.date(2024, 2, 29), "seen": datetime.datetime(2024, 3, 1, 12, 30),
                          "vip": True, "tags": ["a", None, 2], "note": ""}, mapping=mapping)
    assert orjson.loads(orjson.dumps(contact))["attributes"] == {
        "SPEND": 12.5, "VISITS": 3, "SINCE": "2024-02-29", "SEEN": "2024-03-01T12:30:00", "VIP": True,
        "TAGS": ["a", "2"]}


def test_map_returns_the_email_as_identity_and_the_encoded_contact():
    destination = SendinblueDestination(
        ConnectionContext("c", {"api_key": "k"}),
        ExportContext("e", {"list_id": 3, "default_country_code": "+33"}, {"email": "email", "phone": "phone"}))
    record = destination.map({"email": " Bob@X.io", "phone": "0612345678"}, frozenset({"phone"}))
    assert record.identity == "bob@x.io"
    assert orjson.loads(record.payload) == {"email": "bob@x.io", "attributes": {"SMS": "+33612345678"}}
    with pytest.raises(RowRejected, match="invalid email"):
        destination.map({"email": "bob(at)x.io", "phone": None})


def test_limits_carry_the_profile_cap():
    def limits(settings):
        return SendinblueDestination(ConnectionContext("c", {"api_key": "k"}),
                                     ExportContext("e", settings, {"email": "email"})).limits

    assert limits({"list_id": 1}).max_profiles == DEFAULT_MAX_PROFILES == 1_000_000
    assert limits({"list_id": 1, "max_profiles": 5000}).max_profiles == 5000
    assert limits({"list_id": 1}).remove_batch_size == 150
    assert limits({"list_id": 1}).upsert_batch_size >= 10_000


def test_schemas_are_valid_documented_and_closed():
    def walk(schema):
        yield schema
        for child in (schema.get("properties") or {}).values():
            yield from walk(child)

    for schema in (SendinblueDestination.connection_schema, SendinblueDestination.export_settings_schema,
                   SendinblueDestination.mapping_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
        for node in walk(schema):
            assert node.get("description"), node
            if node.get("type") == "object" and "properties" in node:
                assert node["additionalProperties"] is False
    assert SendinblueDestination.connection_schema["properties"]["api_key"]["x-secret"] is True


@pytest.mark.parametrize("schema_name, document, valid", [
    ("connection_schema", {"api_key": "${env:BREVO_KEY}"}, True),
    ("connection_schema", {"api_key": "k", "base_url": "https://api.sendinblue.com/v3"}, True),
    ("connection_schema", {"api_key": "k", "base_url": "ftp://api.brevo.com/v3"}, False),
    ("connection_schema", {"api_key": "k", "requests_per_second": 0}, False),
    ("export_settings_schema", {"list_id": 7, "default_country_code": "+33"}, True),
    ("export_settings_schema", {"list_id": 0}, False),
    ("export_settings_schema", {"list_id": "7"}, False),
    ("export_settings_schema", {}, False),
    ("export_settings_schema", {"list_id": 7, "default_country_code": "France"}, False),
    ("mapping_schema", {"email": "mail", "attributes": {"CITY": "city"}}, True),
    ("mapping_schema", {"first_name": "first"}, False),
    ("mapping_schema", {"email": "mail", "customer_id": "id"}, False),
])
def test_schemas_accept_and_refuse(schema_name, document, valid):
    errors = list(jsonschema.Draft202012Validator(getattr(SendinblueDestination, schema_name)).iter_errors(document))
    assert (not errors) is valid, errors


def test_check_export_finds_attributes_written_twice_and_email_as_attribute():
    problems = list(SendinblueDestination.check_export(
        {}, export_settings({"list_id": 1, "attribute_names": {"last_name": "NOM"}}),
        {"email": "email", "first_name": "first", "last_name": "last",
         "attributes": {"FIRSTNAME": "other", "nom": "x", "Email": "mail", "CITY": "city"}}))
    assert [(p.path, p.message.split(":")[0]) for p in problems] == [
        (("mapping", "attributes", "FIRSTNAME"), "Brevo attribute FIRSTNAME is already set by mapping.first_name; "
                                                 "map each attribute once"),
        (("mapping", "attributes", "nom"), "Brevo attribute nom is already set by mapping.last_name; "
                                           "map each attribute once"),
        (("mapping", "attributes", "Email"), "EMAIL identifies the contact"),
    ]
    assert list(SendinblueDestination.check_export({}, export_settings({"list_id": 1}),
                                                   {"email": "e", "phone": "p"})) == []
