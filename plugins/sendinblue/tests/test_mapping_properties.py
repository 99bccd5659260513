"""Property: whatever a row holds, the Brevo mapping gives a contact Brevo takes, or a reject with a reason.

Never another exception, never a silently dropped row: ``map`` returns a Record or raises RowRejected.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from segship.destination import ConnectionContext, ExportContext, Record, RowRejected
from segship.engine.snapshot import normalised_identity
from segship.testing.strategies import INT64, mostly, rows

from segship_sendinblue.destination import IMPORT_ENVELOPE_BYTES, SendinblueDestination
from segship_sendinblue.mapping import EMAIL_PATTERN, MAX_EMAIL_LENGTH, normalize_email

MAPPING = {"email": "email", "first_name": "first", "last_name": "last", "phone": "phone",
           "attributes": {"TIER": "tier", "SCORE": "score", "TAGS": "tags"}}
COLUMNS = ["email", "first", "last", "phone", "tier", "score", "tags"]
EMAILS = mostly(st.one_of(st.emails(), st.emails().map(lambda email: f"  {email.upper()} ")))
PHONES = mostly(st.from_regex(r"\A(\+|00|0)?[0-9 ().\-/]{6,20}\Z"))
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def destination(country_code: str | None) -> SendinblueDestination:
    export_settings: dict[str, Any] = {"list_id": 2}
    if country_code:
        export_settings["default_country_code"] = country_code
    # a small import limit, so strings of a few kB are "huge" and the size rule is exercised cheaply
    return SendinblueDestination(ConnectionContext("brevo", {"api_key": "${env:BREVO_API_KEY}"}),
                                 ExportContext("vip", export_settings, MAPPING, ("vip",)), max_import_bytes=64 * 1024)


def assert_brevo_takes(value: Any) -> None:
    """An attribute value Brevo stores: text, a finite number, a boolean, or a list of option labels."""
    if isinstance(value, list):
        assert all(isinstance(item, str) for item in value), value
    elif isinstance(value, int) and not isinstance(value, bool):
        assert INT64[0] <= value <= INT64[1]
    else:
        assert isinstance(value, (str, bool, float)), value


@PROPERTY_SETTINGS
@given(row=rows(COLUMNS, email=EMAILS, phone=PHONES), country_code=st.sampled_from([None, "+33", "1"]))
def test_every_row_maps_to_a_contact_brevo_takes_or_to_a_reject_with_a_reason(row, country_code):
    target = destination(country_code)
    try:
        record = target.map(row)
    except RowRejected as rejected:
        assert rejected.reason.strip()
        event("rejected")
        return
    event("mapped")
    assert isinstance(record, Record) and record.key == record.identity
    assert len(record.payload) + 1 + IMPORT_ENVELOPE_BYTES <= target.max_import_bytes  # fits an import alone
    contact = orjson.loads(record.payload)
    assert contact["email"] == record.identity
    assert len(contact["email"]) <= MAX_EMAIL_LENGTH and EMAIL_PATTERN.fullmatch(contact["email"])
    assert set(contact) <= {"email", "attributes"}
    for name, value in contact.get("attributes", {}).items():
        assert name in {"FIRSTNAME", "LASTNAME", "SMS", "TIER", "SCORE", "TAGS"}
        assert_brevo_takes(value)
    if "SMS" in contact.get("attributes", {}):
        assert contact["attributes"]["SMS"].startswith("+") and contact["attributes"]["SMS"][1:].isdigit()


@PROPERTY_SETTINGS
@given(value=st.one_of(st.emails(), st.emails().map(lambda email: f" {email.upper()}\t"), st.text(max_size=300),
                       st.from_regex(r"\A[a-zA-Z.]{1,250}@[a-z]{1,5}\.[a-z]{2}\Z")))
def test_the_identity_rule_gives_every_email_as_the_mapping_makes_it(value):
    """The plan finds keys sharing an email by the rule, in DuckDB; the mapping makes the email that is sent."""
    try:
        expected = normalize_email(value)
    except RowRejected:
        expected = None
    assert normalised_identity(SendinblueDestination.identity_rule(MAPPING), value) == expected
