"""The mapping rules: a segment row becomes a Brevo import contact, or a reject with a reason.

Pure functions, no I/O, so ``--dry-run`` and ``plan`` can map every row offline.
``ContactMapping.contact`` maps one row; ``ContactMapping.contacts`` a batch of rows
column-wise, with the same result for every row (the engine's way).

The email identifies the contact: a row without a usable one is refused. Any other value
Brevo can't take (a phone number that is no number, a struct) is left out of the contact and
named as a dropped field; the contact is still sent. Phone numbers are parsed, validated and
written in E.164 by ``phonenumbers`` (Google's libphonenumber).
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from typing import Any

import phonenumbers
import pyarrow as pa
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from segship.columns import batch_column, is_text, null_rows
from segship.destination import DroppedField, RowRejected


# Pragmatic address check (what Brevo's import also refuses): one @, no spaces, a dotted
# domain with a letter TLD. RFC 5322 allows more, but no mailbox provider does.
EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
#: The same check over many addresses at once, one per line (none of its characters is a newline).
EMAIL_LINES = re.compile(f"^(?:{EMAIL_PATTERN.pattern})$", re.MULTILINE)
MAX_EMAIL_LENGTH = 254
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The international call prefix of most countries (ITU-T E.164): read as "+" when no default
#: country says which prefix its people dial.
INTERNATIONAL_PREFIX = "00"
#: A number written in strict E.164: "+", a country code and national number of 8 to 15 digits
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
#: What phonenumbers' parse errors mean, for a dropped field's reason.
PHONE_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no known country calling code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def normalize_email(value: Any) -> str:
    """The address Brevo matches contacts on (trimmed, lower-cased), or RowRejected."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowRejected("email is empty")
    if not isinstance(value, str):
        raise RowRejected(f"email must be text, not {type(value).__name__}")
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_PATTERN.fullmatch(email):
        raise RowRejected(f"invalid email address {email!r}")
    return email


def phone_region(country_code: str | None) -> str | None:
    """The region a number written without its country code is read in: the main region of the
    ``default_country_code`` setting (+33: FR, +1: US, +44: GB); None without one, or for a code
    no country has (``check_export`` refuses those)."""
    if country_code is None:
        return None
    region = phonenumbers.region_code_for_country_code(int(country_code.lstrip("+")))
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


@functools.cache
def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """The national prefix ``phonenumbers.parse`` may strip after ``country_code`` (the pattern of the
    code's main region, the metadata parse reads such a number with), or None when it has none."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        country_code, phonenumbers.region_code_for_country_code(country_code))
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    return re.compile(pattern) if pattern else None


def e164_number(text: str) -> phonenumbers.PhoneNumber | None:
    """What ``phonenumbers.parse(text)`` makes of a number written in strict E.164
    (``+33612345678``), without parsing it; None when that takes parse.

    Parsing is most of the library's cost for such a number (~9 µs of ~12) and does nothing
    to it but split it: its country code is the first 1 to 3 digits that are one, the rest
    its national number, unless that starts with a 0 (a leading zero parse keeps apart) or
    with a national prefix parse may strip (a ``+44 0…``): those are left to parse. A
    property test holds this to parse's answer (plugins/sendinblue/tests/test_phone_numbers.py).
    """
    if not E164.fullmatch(text):
        return None
    digits = text[1:]
    for size in (1, 2, 3):
        if int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    country_code, national = int(digits[:size]), digits[size:]
    prefix = _national_prefix(country_code)
    if national[0] == "0" or (prefix is not None and prefix.match(national)):
        return None
    return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))


def normalize_phone(value: Any, region: str | None) -> str:
    """A mobile number as Brevo's SMS attribute wants it: E.164 (``+`` country code and digits).

    ``+33 6 12 34 56 78`` carries its country code; ``06 12 34 56 78`` is read in ``region``
    (:func:`phone_region`; its trunk prefix dropped as that country does) or refused. A number
    ``phonenumbers`` can't parse, or that is no valid number of its country, is refused.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowRejected(f"phone must be text or an integer, not {type(value).__name__}")
    written = str(value).strip()
    number = e164_number(written)
    parsed = number is None
    if parsed:
        number = _parsed(value, written, region)
    if not phonenumbers.is_valid_number(number):
        raise RowRejected(f"invalid phone number {value!r}: no valid +{number.country_code} number")
    # a number split by e164_number is written in E.164 already (its national number has no leading zero)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if parsed else written


def _parsed(value: Any, written: str, region: str | None) -> phonenumbers.PhoneNumber:
    """``written`` (``value`` stripped) as phonenumbers parses it in ``region``, or RowRejected."""
    if region is None and written.startswith(INTERNATIONAL_PREFIX):
        written = "+" + written[len(INTERNATIONAL_PREFIX):]
    try:
        return phonenumbers.parse(written, region)
    except phonenumbers.NumberParseException as exc:
        if region is None and exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE \
                and not written.startswith("+"):
            raise RowRejected(f"phone {value!r} has no country code: write it as +<country code><number>, "
                              "or set default_country_code in the export settings") from None
        raise RowRejected(f"invalid phone number {value!r}: "
                          f"{PHONE_PARSE_ERRORS.get(exc.error_type, 'not a phone number')}") from None


def attribute_value(name: str, value: Any) -> Any:
    """A column value as Brevo takes it in JSON; None means "leave the attribute as it is".

    Brevo attributes hold text, numbers, dates, booleans and lists of option labels; any other
    value (a struct, bytes, a time of day, a duration, a number past 64 bits) is a reject.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None  # emptyContactsAttributes is false: "" would change nothing
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None  # as a NaN float: no number to store
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or isinstance(value, (datetime.date, datetime.datetime)):
        return value  # orjson writes dates and datetimes (with their offset) in ISO 8601
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise RowRejected(f"{name} is {value}, a number too large for a Brevo attribute")
        return value
    if isinstance(value, (list, tuple)):
        # multiple-choice attributes take a list of option labels
        labels = []
        for item in value:
            if item is None:
                continue
            label = attribute_value(name, item)
            if isinstance(label, list):
                raise RowRejected(f"{name} holds a list inside a list; Brevo takes a list of option labels")
            if label is not None:
                labels.append(label if isinstance(label, str) else str(label))
        return labels
    raise RowRejected(f"{name} holds a {type(value).__name__}, which a Brevo attribute can't store (text, numbers, "
                      "dates, booleans or a list of options)")


@dataclass(frozen=True)
class ContactMapping:
    """An export's mapping and settings, compiled once per run."""

    email_column: str
    attribute_columns: tuple[tuple[str, str], ...]   # (Brevo attribute, column)
    phone: tuple[str, str] | None                     # (Brevo attribute, column)
    phone_region: str | None                          # where a number without a country code is read

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], mapping: Mapping[str, Any]) -> ContactMapping:
        names = settings["attribute_names"]  # the schema's defaults filled in
        columns = [(names[field], mapping[field]) for field in ("first_name", "last_name") if field in mapping]
        columns += list(mapping.get("attributes", {}).items())
        phone = (names["phone"], mapping["phone"]) if "phone" in mapping else None
        return cls(mapping["email"], tuple(columns), phone, phone_region(settings.get("default_country_code")))

    def contact(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[DroppedField, ...]]:
        """The ``jsonBody`` entry for a row, ``{"email": …, "attributes": {…}}``, and the fields left
        out of it for their invalid values; RowRejected when the email is unusable."""
        contact: dict[str, Any] = {"email": normalize_email(row.get(self.email_column))}
        attributes: dict[str, Any] = {}
        dropped: list[DroppedField] = []
        for attribute, column in self.attribute_columns:
            try:
                value = attribute_value(attribute, row.get(column))
            except RowRejected as exc:
                dropped.append(DroppedField(column, exc.reason))
                continue
            if value is not None:
                attributes[attribute] = value
        if self.phone is not None:
            attribute, column = self.phone
            value = row.get(column)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                try:
                    attributes[attribute] = normalize_phone(value, self.phone_region)
                except RowRejected as exc:
                    dropped.append(DroppedField(column, exc.reason))
        if attributes:
            contact["attributes"] = attributes
        return contact, tuple(dropped)

    def contacts(self, rows: pa.RecordBatch) -> tuple[list[dict[str, Any] | None], dict[int, str],
                                                      dict[int, tuple[DroppedField, ...]]]:
        """``contact`` for every row of a batch: the contacts (None for a refused row), the rejects
        and the dropped fields by row, exactly as ``contact`` makes them row by row.

        Addresses are checked all at once and attribute columns converted whole; a row with an
        address, a phone number or a value to refuse goes through ``contact`` itself, so every
        reason and edge case is ``contact``'s own.
        """
        slow: set[int] = set()  # rows ``contact`` maps
        emails = _addresses(batch_column(rows, self.email_column), slow)
        attributes = [(attribute, _attribute_values(attribute, batch_column(rows, name), slow))
                      for attribute, name in self.attribute_columns]
        phone_dropped: dict[int, DroppedField] = {}  # rows whose phone alone is dropped: not slow
        if self.phone is not None:
            attribute, name = self.phone
            attributes.append((attribute, self._phones(batch_column(rows, name), name, phone_dropped)))
        names = [attribute for attribute, _ in attributes]
        columns = [values for _, values in attributes]
        contacts: list[dict[str, Any] | None] = []
        rejects: dict[int, str] = {}
        dropped: dict[int, tuple[DroppedField, ...]] = {}
        for index, (email, values) in enumerate(zip(emails, zip(*columns) if columns else repeat(()))):
            if index in slow:
                try:
                    contact, dropped_fields = self.contact(rows.slice(index, 1).to_pylist()[0])
                except RowRejected as exc:
                    contacts.append(None)
                    rejects[index] = exc.reason
                    continue
                contacts.append(contact)
                if dropped_fields:
                    dropped[index] = dropped_fields
                continue
            if None in values:  # an empty value is not sent
                values_set = {name: value for name, value in zip(names, values) if value is not None}
            else:
                values_set = dict(zip(names, values))
            contacts.append({"email": email, "attributes": values_set} if values_set else {"email": email})
            if index in phone_dropped:
                dropped[index] = (phone_dropped[index],)
        return contacts, rejects, dropped

    def _phones(self, array: pa.Array, column: str, dropped: dict[int, DroppedField]) -> list[str | None]:
        """``normalize_phone`` of a column, None where blank or dropped (its reason in ``dropped``, as
        ``contact`` gives it: the same function made it)."""
        phones: list[str | None] = []
        region = self.phone_region
        for index, value in enumerate(array.to_pylist()):
            if value is None or (isinstance(value, str) and not value.strip()):
                phones.append(None)
                continue
            try:
                phones.append(normalize_phone(value, region))
            except RowRejected as exc:
                dropped[index] = DroppedField(column, exc.reason)
                phones.append(None)
        return phones


def _addresses(array: pa.Array, slow: set[int]) -> list[Any]:
    """``normalize_email`` of a column; a row whose address is to be refused is ``contact``'s."""
    slow.update(null_rows(array))
    values = array.to_pylist()
    if not is_text(array):
        slow.update(range(len(values)))
        return values
    emails = [value.strip().lower() if value is not None else "" for value in values]
    lines = "\n".join(emails)
    if (lines.count("\n") != len(emails) - 1 or max(map(len, emails), default=0) > MAX_EMAIL_LENGTH
            or EMAIL_LINES.subn("", lines)[1] != len(emails)):
        slow.update(index for index, email in enumerate(emails)
                    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_PATTERN.fullmatch(email))
    return emails


def _attribute_values(name: str, array: pa.Array, slow: set[int]) -> list[Any]:
    """``attribute_value`` of a column; text is kept as it is unless blank. A value to refuse
    puts its row in ``slow``, so the reason is ``contact``'s own."""
    values = array.to_pylist()
    if is_text(array):
        if not array.null_count and all(map(str.strip, values)):
            return values
        return [value if value is not None and value.strip() else None for value in values]
    if pa.types.is_integer(array.type) or pa.types.is_boolean(array.type):
        return values
    converted = []
    for index, value in enumerate(values):
        try:
            converted.append(attribute_value(name, value))
        except RowRejected:
            slow.add(index)
            converted.append(None)
    return converted
