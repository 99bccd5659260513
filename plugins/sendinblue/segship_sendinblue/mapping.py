"""The mapping rules: a segment row becomes a Brevo import contact, or a reject with a reason.

Pure functions, no I/O, so ``--dry-run`` and ``plan`` can map every row offline.
``ContactMapping.contact`` maps one row; ``ContactMapping.contacts`` a batch of rows
column-wise, with the same result for every row (the engine's way).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from typing import Any

import pyarrow as pa
from segship.columns import batch_column, is_text, null_rows
from segship.destination import RowRejected


# Pragmatic address check (what Brevo's import also refuses): one @, no spaces, a dotted
# domain with a letter TLD. RFC 5322 allows more, but no mailbox provider does.
EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
#: The same check over many addresses at once, one per line (none of its characters is a newline).
EMAIL_LINES = re.compile(f"^(?:{EMAIL_PATTERN.pattern})$", re.MULTILINE)
MAX_EMAIL_LENGTH = 254
# Separators people write in phone numbers; anything else that is not a digit is an error.
PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
# E.164: at most 15 digits with the country code; fewer than 8 is no mobile number anywhere.
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 8, 15
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Numbers already as Brevo wants them (normalize_phone keeps them as they are), one per line.
CANONICAL_PHONE_LINES = re.compile(r"^\+[1-9][0-9]{7,14}$", re.MULTILINE)


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


def normalize_phone(value: Any, default_country_code: str | None) -> str:
    """A mobile number as Brevo's SMS attribute wants it: ``+`` country code and digits.

    ``+33 6 12 34 56 78`` and ``0033612345678`` carry their country code; ``06 12 34 56 78``
    does not and gets ``default_country_code`` (its trunk 0 dropped) or is rejected.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowRejected(f"phone must be text or an integer, not {type(value).__name__}")
    written = PHONE_SEPARATORS.sub("", str(value))
    if written.startswith("+"):
        digits = written[1:]
    elif written.startswith("00"):
        digits = written[2:]
    elif default_country_code is None:
        raise RowRejected(f"phone {value!r} has no country code: write it as +<country code><number>, "
                          "or set default_country_code in the export settings")
    else:
        national = written[1:] if written.startswith("0") else written
        digits = default_country_code.lstrip("+") + national
    if not digits.isdigit() or digits.startswith("0"):
        raise RowRejected(f"invalid phone number {value!r}")
    if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
        raise RowRejected(f"invalid phone number {value!r}: {len(digits)} digits with the country code, "
                          f"expected {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS}")
    return "+" + digits


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
    default_country_code: str | None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], mapping: Mapping[str, Any]) -> ContactMapping:
        names = settings["attribute_names"]  # the schema's defaults filled in
        columns = [(names[field], mapping[field]) for field in ("first_name", "last_name") if field in mapping]
        columns += list(mapping.get("attributes", {}).items())
        phone = (names["phone"], mapping["phone"]) if "phone" in mapping else None
        return cls(mapping["email"], tuple(columns), phone, settings.get("default_country_code"))

    def contact(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The ``jsonBody`` entry for a row: ``{"email": …, "attributes": {…}}``."""
        contact: dict[str, Any] = {"email": normalize_email(row.get(self.email_column))}
        attributes: dict[str, Any] = {}
        for attribute, column in self.attribute_columns:
            value = attribute_value(attribute, row.get(column))
            if value is not None:
                attributes[attribute] = value
        if self.phone is not None:
            attribute, column = self.phone
            value = row.get(column)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                attributes[attribute] = normalize_phone(value, self.default_country_code)
        if attributes:
            contact["attributes"] = attributes
        return contact

    def contacts(self, rows: pa.RecordBatch) -> tuple[list[dict[str, Any] | None], dict[int, str]]:
        """``contact`` for every row of a batch: the contacts (None for a refused row) and the
        rejects by row, exactly as ``contact`` makes them row by row.

        Addresses are checked all at once and attribute columns converted whole; a row with an
        address or phone number to refuse goes through ``contact`` itself, so every reason and
        edge case is ``contact``'s own.
        """
        slow: set[int] = set()  # rows ``contact`` maps
        emails = _addresses(batch_column(rows, self.email_column), slow)
        attributes = [(attribute, _attribute_values(attribute, batch_column(rows, name), slow))
                      for attribute, name in self.attribute_columns]
        if self.phone is not None:
            attribute, name = self.phone
            attributes.append((attribute, self._phones(batch_column(rows, name), slow)))
        names = [attribute for attribute, _ in attributes]
        columns = [values for _, values in attributes]
        contacts: list[dict[str, Any] | None] = []
        rejects: dict[int, str] = {}
        for index, (email, values) in enumerate(zip(emails, zip(*columns) if columns else repeat(()))):
            if index in slow:
                try:
                    contacts.append(self.contact(rows.slice(index, 1).to_pylist()[0]))
                except RowRejected as exc:
                    contacts.append(None)
                    rejects[index] = exc.reason
                continue
            if None in values:  # an empty value is not sent
                values_set = {name: value for name, value in zip(names, values) if value is not None}
            else:
                values_set = dict(zip(names, values))
            contacts.append({"email": email, "attributes": values_set} if values_set else {"email": email})
        return contacts, rejects

    def _phones(self, array: pa.Array, slow: set[int]) -> list[str | None]:
        """``normalize_phone`` of a column, None where blank; a number to refuse is ``contact``'s."""
        values = array.to_pylist()
        if is_text(array):
            written = list(filter(None, values))
            lines = "\n".join(written)
            if lines.count("\n") == len(written) - 1 and CANONICAL_PHONE_LINES.subn("", lines)[1] == len(written):
                return [value or None for value in values]  # every number as Brevo wants it already
        phones: list[str | None] = []
        for index, value in enumerate(values):
            if value is None or (isinstance(value, str) and not value.strip()):
                phones.append(None)
                continue
            try:
                phones.append(normalize_phone(value, self.default_country_code))
            except RowRejected:
                slow.add(index)
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
