"""The webhook mapping rules: a segment row as a member's identity and the JSON fields sent with it."""

from __future__ import annotations

import datetime
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from segship.destination import RowRejected

#: orjson writes integers of at most 64 bits; a larger one is refused rather than rounded.
INTEGER_RANGE = range(-2**63, 2**64)


def identity_of(column: str, value: Any) -> str:
    """A member's identity: text (as it is, not empty) or an integer (as its digits)."""
    if isinstance(value, str) and value:
        return value
    if type(value) is int:
        return str(value)
    if value is None or value == "":
        raise RowRejected(f"identity column {column} is empty")
    raise RowRejected(f"identity column {column} holds {type(value).__name__}; expected text or an integer")


def field_value(field: str, value: Any) -> Any:
    """A value as JSON carries it, or RowRejected naming the field when JSON can't carry it faithfully.

    Text, booleans, integers and finite floats as they are; a decimal as its exact digits; times
    and dates in ISO 8601 as the source has them (a naive time stays naive); a duration in seconds;
    a UUID as text; lists and mappings item by item. Nothing is rounded or cut: NaN, infinity, an
    integer past 64 bits and bytes refuse the row.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if value not in INTEGER_RANGE:
            raise RowRejected(f"{field} is an integer past 64 bits, which JSON numbers can't carry exactly here")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowRejected(f"{field} is {value}, which JSON can't carry")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RowRejected(f"{field} is {value}, which JSON can't carry")
        return orjson.Fragment(format(value, "f"))  # the exact digits, as a JSON number
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [field_value(field, item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): field_value(field, item) for key, item in value.items()}
    raise RowRejected(f"{field} holds {type(value).__name__}, which has no JSON form")


@dataclass(frozen=True)
class MemberMapping:
    """An export's mapping, compiled once per run: the identity column and ``(field, column)`` pairs."""

    identity_column: str
    field_columns: tuple[tuple[str, str], ...]

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any]) -> MemberMapping:
        """From the export's mapping, its defaults filled in."""
        return cls(mapping["identity"], tuple(mapping["fields"].items()))

    def member(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None) -> tuple[str, dict[str, Any]]:
        """The identity and the fields of a joining member (``changed_columns`` None: every field) or
        of a change (the fields whose column changed)."""
        identity = identity_of(self.identity_column, row.get(self.identity_column))
        return identity, {field: field_value(field, row.get(column)) for field, column in self.field_columns
                          if changed_columns is None or column in changed_columns}
