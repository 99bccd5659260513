"""Hypothesis strategies for what a segment row can hold, shared by the core's and the plugins' property tests.

A row reaches a destination's mapping rules as Arrow's Python values (``to_pylist``), whatever
the source: text of any Unicode, ints of 64 bits (unsigned too), floats with NaN and infinities,
decimals of up to 76 digits (decimal256), dates, times and datetimes with and without a zone,
durations, bytes, lists, structs (dicts with text keys), maps (lists of key/value pairs) and None.
Needs the test extra ``hypothesis``; nothing else imports this module.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1

#: Text that stays small, and text far over any destination's limit (a repeated character is cheap to build).
texts = st.text(max_size=40)
huge_texts = st.builds(lambda char, size: char * size, st.characters(), st.integers(256, 100_000))

zones = st.sampled_from([None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
                         datetime.timezone(datetime.timedelta(hours=-11))])

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(*INT64),
    st.integers(INT64[1] + 1, UINT64_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(lambda digits, exponent: Decimal(digits).scaleb(exponent),
              st.integers(-(10**76) + 1, 10**76 - 1), st.integers(-76, 38)),
    st.sampled_from([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("-0.000")]),
    texts,
    huge_texts,
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(timezones=zones),
    st.times(timezones=zones),
    st.timedeltas(),
)

values: st.SearchStrategy[Any] = scalars | st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(texts, inner, max_size=4),
        st.lists(st.tuples(texts, inner), max_size=3),  # an Arrow map column
    ),
    max_leaves=8,
)


#: What a tidy column holds; a row of nothing but ``values`` would nearly always be refused somewhere.
tidy_values: st.SearchStrategy[Any] = st.one_of(
    st.none(), texts, st.integers(*INT64), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.dates(), st.datetimes(timezones=zones), st.lists(texts, max_size=3))


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any] = values,
           share: float = 0.8) -> st.SearchStrategy[Any]:
    """``usual`` about ``share`` of the time, else ``other`` (``one_of`` drifts towards the richer branch)."""
    return st.floats(0, 1).flatmap(lambda draw: usual if draw < share else other)


column_values = mostly(tidy_values)


def rows(columns: list[str], **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Rows with these columns, each from ``column_values`` unless ``fixed`` gives the column its own strategy."""
    return st.fixed_dictionaries({column: fixed.get(column, column_values) for column in columns})
