"""The mapping rules: a segment row becomes a Braze attributes object, or a reject with a reason.

Pure functions, no I/O, so ``plan`` and ``--dry-run`` can map every row offline. Nothing
is truncated: a value Braze would refuse or cut is left out and named as a dropped field,
with why. The external ID identifies the user: a row without a usable one is refused.

``UserMapping.user`` maps one row; ``UserMapping.users`` a batch of rows column-wise, with
the same result for every row (the engine's way; see ``users``).
"""

from __future__ import annotations

import datetime
import math
import operator
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from itertools import repeat
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from segship.columns import (
    batch_column,
    has_edge_python_whitespace,
    JsonArray,
    has_python_whitespace,
    is_text,
    json_member,
    long_text_rows,
    may_have_python_whitespace,
    may_need_json_escapes,
    needs_json_escapes,
    null_rows,
    rows_where,
    small_text,
)
from segship.destination import DroppedField, MappedBatch, RowRejected

#: Braze keeps at most 255 characters of a string attribute (and of an attribute name).
MAX_STRING_LENGTH = 255
#: Keys of an attributes object that identify the user or steer the request, not attributes.
CONTROL_KEYS = frozenset({"external_id", "user_alias", "braze_id", "_update_existing_only", "push_token_import"})
#: Braze's subscription (consent) fields: segship writes one only where a mapping entry names it.
CONSENT_FIELDS = frozenset({"email_subscribe", "push_subscribe", "subscription_groups"})
WHITESPACE = re.compile(r"\s")
#: Braze profile fields with a format of their own.
DATE_OF_BIRTH = "dob"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def attribute_name_problem(name: str) -> str | None:
    """Why ``name`` can't be an attribute segship writes, or None when it can."""
    if name in CONTROL_KEYS:
        return f"{name!r} is a Braze identifier/control key, not an attribute"
    if name == "email":
        return "'email' is the user's address, set from mapping.email"
    if name.startswith("$"):
        return f"{name!r}: attribute names starting with '$' are reserved by Braze"
    if not name.strip() or name != name.strip():
        return f"{name!r}: attribute names must not be blank or start or end with spaces"
    if len(name) > MAX_STRING_LENGTH:
        return f"attribute name of {len(name)} characters: Braze allows at most {MAX_STRING_LENGTH}"
    return None


def _text(value: str, what: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise RowRejected(f"{what} is {len(value)} characters long; Braze allows at most {MAX_STRING_LENGTH} "
                          "(nothing is truncated: shorten it in the source)")
    return value


def _iso_datetime(value: datetime.datetime) -> str:
    # a naive time is taken as UTC, which is how Braze reads a time without an offset
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    return value.isoformat()


def attribute_value(name: str, value: Any) -> Any:
    """A column value as Braze takes it in JSON; None stays None (Braze removes the attribute)."""
    if isinstance(value, str):  # first: most values are text
        return value if len(value) <= MAX_STRING_LENGTH else _text(value, name)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise RowRejected(f"{name} is {value}, a number too large for Braze (64 bits at most)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowRejected(f"{name} is {value}, which is no number Braze can store")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RowRejected(f"{name} is {value}, which is no number Braze can store")
        return attribute_value(name, int(value)) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime):
        return _iso_datetime(value)
    if isinstance(value, datetime.date):
        # dob is a calendar date; any other date becomes a time attribute at midnight UTC
        return value.isoformat() if name == DATE_OF_BIRTH else value.isoformat() + "T00:00:00Z"
    if isinstance(value, (list, tuple)):
        return [_array_item(name, item) for item in value if item is not None]
    if isinstance(value, Mapping):  # a nested custom attribute (Braze object attribute)
        return {str(key): attribute_value(f"{name}.{key}", item) for key, item in value.items()}
    if isinstance(value, uuid.UUID):
        return str(value)
    raise RowRejected(f"{name} holds a {type(value).__name__}, which Braze can't store as an attribute")


def _array_item(name: str, item: Any) -> Any:
    """Braze arrays hold strings (or objects); numbers and booleans are sent as their text."""
    converted = attribute_value(f"an item of {name}", item)
    if isinstance(converted, list):
        raise RowRejected(f"{name} holds a list inside a list; Braze arrays hold text or objects")
    if isinstance(converted, bool):
        return "true" if converted else "false"
    if isinstance(converted, (int, float)):
        return str(converted)
    return converted


def external_id(value: Any) -> str:
    """The customer ID as Braze's external_id: a non-empty string of at most 255 characters."""
    if type(value) is int:  # the usual key
        return str(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise RowRejected(f"customer_id must be text or an integer, not {type(value).__name__}"
                          if value is not None else "customer_id is empty")
    text = str(value).strip()
    if not text:
        raise RowRejected("customer_id is empty")
    return _text(text, "customer_id")


def email_address(value: Any) -> str:
    """The address, trimmed; Braze checks it further and refuses a bad one in its errors."""
    if not isinstance(value, str):
        raise RowRejected("email is empty" if value is None else f"email must be text, not {type(value).__name__}")
    email = value.strip()
    if not email:
        raise RowRejected("email is empty")
    if "@" not in email or WHITESPACE.search(email):
        raise RowRejected(f"invalid email address {email!r}")
    return _text(email, "email")


@dataclass(frozen=True)
class Membership:
    """Where an export marks its members: its segment identifier in the membership attribute."""

    attribute: str
    segment_api_identifier: str

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Membership:
        """From the export's settings, their defaults filled in."""
        return cls(settings["membership_attribute"], settings["segment_api_identifier"])

    def leaver(self, identity: str) -> dict[str, Any]:
        """The attributes object that takes a user out of the segment (the user stays in Braze).

        Always update-only: removing a membership must never create a user that was deleted.
        """
        return {"external_id": identity, "_update_existing_only": True,
                self.attribute: {"remove": [self.segment_api_identifier]}}


@dataclass(frozen=True)
class UserMapping:
    """An export's mapping and settings, compiled once per run."""

    customer_id_column: str
    email_column: str
    attribute_columns: tuple[tuple[str, str], ...]   # (Braze attribute, column)
    membership_attribute: str
    segment_api_identifier: str
    update_existing_only: bool

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], mapping: Mapping[str, Any]) -> UserMapping:
        """From the export's settings (their defaults filled in) and mapping."""
        membership = Membership.of(settings)
        return cls(mapping["customer_id"], mapping["email"], tuple(mapping.get("attributes", {}).items()),
                   membership.attribute, membership.segment_api_identifier,
                   bool(settings["update_existing_only"]))

    def user(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None
             ) -> tuple[dict[str, Any], tuple[DroppedField, ...]]:
        """The attributes object of a joining member (``changed_columns`` None) or of a change, and the
        fields left out of it for their invalid values.

        A change carries the external_id and only the attributes whose columns changed
        (Braze bills every attribute written); a value that became empty is sent as null,
        which removes it in Braze. A changed customer ID is another Braze user, so it is
        sent as a join (the engine removes the old one).
        """
        # a hot loop: one call per row the column-wise paths can't decide
        user: dict[str, Any] = {"external_id": external_id(row.get(self.customer_id_column))}
        dropped: list[DroppedField] = []
        if changed_columns is None or self.customer_id_column in changed_columns:
            _put(user, dropped, "email", self.email_column, email_address, row.get(self.email_column))
            for attribute, column in self.attribute_columns:
                value = row.get(column)
                if value is not None:  # a new member has nothing to remove
                    _put(user, dropped, attribute, column, partial(attribute_value, attribute), value)
            user[self.membership_attribute] = {"add": [self.segment_api_identifier]}
        else:
            if self.email_column in changed_columns:
                _put(user, dropped, "email", self.email_column, email_address, row.get(self.email_column))
            for attribute, column in self.attribute_columns:
                if column in changed_columns:
                    _put(user, dropped, attribute, column, partial(attribute_value, attribute), row.get(column))
        if self.update_existing_only:
            user["_update_existing_only"] = True
        return user, tuple(dropped)

    def users(self, rows: pa.RecordBatch, changed: Sequence[frozenset[str] | None] | None) -> MappedBatch:
        """``user`` for every row of a batch, exactly as ``user`` makes them row by row: the
        external IDs, the attributes objects (or their JSON) and the rejects by row.

        Joins of text, integers and booleans are written as JSON in Arrow (``_joins``). Otherwise
        columns are converted whole: text within Braze's length, integers, booleans and finite
        floats need no decision per value. Either way a row holding anything else (a value to
        reject, an empty identifier, ...) goes through ``user`` itself, so every reason and edge
        case is ``user``'s own.
        """
        if changed is None:
            joins = self._joins(rows)
            if joins is not None:
                return joins
        size = rows.num_rows
        slow: set[int] = set()  # rows ``user`` maps
        ids = _external_ids(batch_column(rows, self.customer_id_column), slow)
        emails = _email_addresses(batch_column(rows, self.email_column), slow)
        attributes = [(attribute, name, _attribute_values(attribute)(batch_column(rows, name), slow))
                      for attribute, name in self.attribute_columns]
        users: list[dict[str, Any] | None] = []
        identities: list[str | None] = []
        rejects: dict[int, str] = {}
        dropped: dict[int, tuple[DroppedField, ...]] = {}
        membership, segment = self.membership_attribute, self.segment_api_identifier
        for index in range(size):
            columns = None if changed is None else changed[index]
            if index in slow:
                try:
                    user, dropped_fields = self.user(rows.slice(index, 1).to_pylist()[0], columns)
                except RowRejected as exc:
                    users.append(None)
                    identities.append(None)
                    rejects[index] = exc.reason
                    continue
                if dropped_fields:
                    dropped[index] = dropped_fields
                users.append(user)
                identities.append(user["external_id"])
                continue
            user = {"external_id": ids[index]}
            if columns is None or self.customer_id_column in columns:
                user["email"] = emails[index]
                for attribute, _, values in attributes:
                    if values[index] is not None:  # a new member has nothing to remove
                        user[attribute] = values[index]
                user[membership] = {"add": [segment]}
            else:
                if self.email_column in columns:
                    user["email"] = emails[index]
                for attribute, name, values in attributes:
                    if name in columns:
                        user[attribute] = values[index]
            if self.update_existing_only:
                user["_update_existing_only"] = True
            users.append(user)
            identities.append(ids[index])
        return MappedBatch(identities, users, rejects, dropped)

    def _joins(self, rows: pa.RecordBatch) -> MappedBatch | None:
        """``users`` of a batch of joins, their JSON made column-wise in Arrow: per row the bytes
        orjson writes of ``user``'s dict, with no Python object per value (a :class:`JsonArray`
        when no row needs more). A row that needs a decision of its own (a null or odd
        identifier, an address to check, text too long or with JSON escapes, an integer beyond
        64 bits) goes through ``user`` itself. None when a column holds a kind written otherwise
        (floats, dates, lists...) or names collide.
        """
        names = ["external_id", "email", *(attribute for attribute, _ in self.attribute_columns)]
        if len(set(names)) < len(names) or {self.membership_attribute, "_update_existing_only"} & set(names):
            return None  # names `user` would overwrite (validate refuses them)
        ids, emails = batch_column(rows, self.customer_id_column), batch_column(rows, self.email_column)
        if not is_text(emails):
            return None
        # each check asks about the whole column first (counts, a pass over the bytes): rows are
        # looked for only when it fails, which is rare
        emails = small_text(emails)
        slow = {*null_rows(emails), *long_text_rows(emails, MAX_STRING_LENGTH)}
        has_at = pc.match_substring(emails, "@")
        if not pc.all(has_at).as_py():
            slow.update(rows_where(pc.invert(has_at)))
        if may_have_python_whitespace(emails) or may_need_json_escapes(emails):
            slow.update(rows_where(pc.or_(has_python_whitespace(emails), needs_json_escapes(emails))))
        if pa.types.is_integer(ids.type):
            id_texts = pc.cast(ids, pa.string())
            slow.update(null_rows(ids))
        elif is_text(ids):
            id_texts = small_text(ids)
            slow.update(null_rows(id_texts), long_text_rows(id_texts, MAX_STRING_LENGTH))
            if pc.min(pc.binary_length(id_texts)).as_py() == 0:
                slow.update(rows_where(pc.equal(pc.binary_length(id_texts), 0)))
            if may_have_python_whitespace(id_texts) or may_need_json_escapes(id_texts):
                slow.update(rows_where(pc.or_(has_edge_python_whitespace(id_texts), needs_json_escapes(id_texts))))
        else:
            return None
        parts: list[Any] = ['{"external_id":"', id_texts, '","email":"', emails, '"']
        for attribute, column in self.attribute_columns:
            values = batch_column(rows, column)
            if is_text(values):
                values = small_text(values)
                slow.update(long_text_rows(values, MAX_STRING_LENGTH))
                if may_need_json_escapes(values):
                    slow.update(rows_where(needs_json_escapes(values)))
            elif pa.types.is_unsigned_integer(values.type):
                slow.update(rows_where(pc.greater(values, INT64_MAX)))
            elif not (pa.types.is_integer(values.type) or pa.types.is_boolean(values.type)
                      or pa.types.is_null(values.type)):
                return None
            parts += json_member(attribute, values)
        tail = {self.membership_attribute: {"add": [self.segment_api_identifier]}}
        if self.update_existing_only:
            tail["_update_existing_only"] = True
        parts.append("," + orjson.dumps(tail).decode()[1:])
        texts = JsonArray.joined(parts)
        if not slow:
            return MappedBatch(id_texts.to_pylist(), texts)
        identities = id_texts.to_pylist()
        payloads: list[Any] = texts.fragments()
        rejects: dict[int, str] = {}
        dropped: dict[int, tuple[DroppedField, ...]] = {}
        for index in sorted(slow):
            try:
                user, dropped_fields = self.user(rows.slice(index, 1).to_pylist()[0], None)
            except RowRejected as exc:
                identities[index] = payloads[index] = None
                rejects[index] = exc.reason
                continue
            identities[index], payloads[index] = user["external_id"], user
            if dropped_fields:
                dropped[index] = dropped_fields
        return MappedBatch(identities, payloads, rejects, dropped)


def _put(user: dict[str, Any], dropped: list[DroppedField], attribute: str, column: str,
         convert: Callable[[Any], Any], value: Any) -> None:
    """Set ``user[attribute]`` to ``convert(value)``, or name the field dropped when Braze can't take it."""
    try:
        user[attribute] = convert(value)
    except RowRejected as exc:
        dropped.append(DroppedField(column, exc.reason))


# -- column-wise conversions: the values ``user`` would send, and the rows it must decide itself --

#: A column's values as Braze takes them; the rows whose value needs ``user`` are added to the set.
Conversion = Callable[[pa.Array, set[int]], list[Any]]


def _external_ids(array: pa.Array, slow: set[int]) -> list[Any]:
    """``external_id`` of text or integers; a null, empty or too long identifier is ``user``'s."""
    slow.update(null_rows(array))
    values = array.to_pylist()
    if pa.types.is_integer(array.type):
        return [str(value) for value in values]  # None: a slow row, whatever this makes of it
    if not is_text(array):
        slow.update(range(len(values)))
        return values
    ids = [value.strip() if value is not None else "" for value in values]
    if not all(ids) or max(map(len, ids), default=0) > MAX_STRING_LENGTH:
        slow.update(index for index, text in enumerate(ids) if not text or len(text) > MAX_STRING_LENGTH)
    return ids


def _email_addresses(array: pa.Array, slow: set[int]) -> list[Any]:
    """``email_address`` of text; a null, empty, malformed or too long address is ``user``'s."""
    slow.update(null_rows(array))
    values = array.to_pylist()
    if not is_text(array):
        slow.update(range(len(values)))
        return values
    emails = [value.strip() if value is not None else "" for value in values]
    # "\0" is no whitespace, so one search over the joined addresses finds whitespace in any of them
    if (not all(emails) or not all(map(operator.contains, emails, repeat("@")))
            or WHITESPACE.search("\0".join(emails)) or max(map(len, emails), default=0) > MAX_STRING_LENGTH):
        slow.update(index for index, email in enumerate(emails) if not email or "@" not in email
                    or WHITESPACE.search(email) or len(email) > MAX_STRING_LENGTH)
    return emails


def _attribute_values(attribute: str) -> Conversion:
    """``attribute_value`` of a column: text and numbers as they are, other types value by value."""

    def convert(array: pa.Array, slow: set[int]) -> list[Any]:
        kind = array.type
        values = array.to_pylist()
        # filter(None, ...) skips nulls (and empty text, zeros: fine as they are) in C, not per value in Python
        if is_text(array):
            if max(map(len, filter(None, values)), default=0) > MAX_STRING_LENGTH:
                slow.update(index for index, value in enumerate(values)
                            if value is not None and len(value) > MAX_STRING_LENGTH)
            return values
        if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
            return values
        if pa.types.is_float32(kind) or pa.types.is_float64(kind):
            if not all(map(math.isfinite, filter(None, values))):
                slow.update(index for index, value in enumerate(values)
                            if value is not None and not math.isfinite(value))
            return values
        converted = []
        for index, value in enumerate(values):
            try:
                converted.append(attribute_value(attribute, value))
            except RowRejected:
                slow.add(index)
                converted.append(None)
        return converted

    return convert
