"""The mapping rules: a segment row becomes a Braze attributes object, or a reject with a reason.

Pure functions, no I/O, so ``plan`` and ``--dry-run`` can map every row offline. Nothing
is truncated: a value Braze would refuse or cut is a reject that says why.
"""

from __future__ import annotations

import datetime
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from segship.destination import RowRejected

#: Braze keeps at most 255 characters of a string attribute (and of an attribute name).
MAX_STRING_LENGTH = 255
#: Keys of an attributes object that identify the user or steer the request, not attributes.
CONTROL_KEYS = frozenset({"external_id", "user_alias", "braze_id", "_update_existing_only", "push_token_import"})
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
class UserMapping:
    """An export's mapping and settings, compiled once per run."""

    customer_id_column: str
    email_column: str
    attribute_columns: tuple[tuple[str, str], ...]   # (Braze attribute, column)
    membership_attribute: str
    segment_api_identifier: str
    update_existing_only: bool

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], mapping: Mapping[str, Any],
                    default_membership_attribute: str) -> UserMapping:
        return cls(mapping["customer_id"], mapping["email"], tuple(mapping.get("attributes", {}).items()),
                   settings.get("membership_attribute", default_membership_attribute),
                   settings["segment_api_identifier"], bool(settings.get("update_existing_only", False)))

    def user(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None) -> dict[str, Any]:
        """The attributes object of a joining member (``changed_columns`` None) or of a change.

        A change carries the external_id and only the attributes whose columns changed
        (Braze bills every attribute written); a value that became empty is sent as null,
        which removes it in Braze. A changed customer ID is another Braze user, so it is
        sent as a join (the engine removes the old one).
        """
        # a hot loop: one call per row of the segment
        user: dict[str, Any] = {"external_id": external_id(row.get(self.customer_id_column))}
        if changed_columns is None or self.customer_id_column in changed_columns:
            user["email"] = email_address(row.get(self.email_column))
            for attribute, column in self.attribute_columns:
                value = row.get(column)
                if value is not None:  # a new member has nothing to remove
                    user[attribute] = attribute_value(attribute, value)
            user[self.membership_attribute] = {"add": [self.segment_api_identifier]}
        else:
            if self.email_column in changed_columns:
                user["email"] = email_address(row.get(self.email_column))
            for attribute, column in self.attribute_columns:
                if column in changed_columns:
                    user[attribute] = attribute_value(attribute, row.get(column))
        if self.update_existing_only:
            user["_update_existing_only"] = True
        return user

    def leaver(self, identity: str) -> dict[str, Any]:
        """The attributes object that takes a user out of the segment (the user stays in Braze).

        Always update-only: removing a membership must never create a user that was deleted.
        """
        return {"external_id": identity, "_update_existing_only": True,
                self.membership_attribute: {"remove": [self.segment_api_identifier]}}
