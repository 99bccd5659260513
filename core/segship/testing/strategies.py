"""Hypothesis strategies for what a segment row can hold, shared by the core's and the plugins' property tests.

A row reaches a destination's mapping rules as Arrow's Python values (``to_pylist``), whatever
the source: text of any Unicode, ints of 64 bits (unsigned too), floats with NaN and infinities,
decimals of up to 76 digits (decimal256), dates, times and datetimes with and without a zone,
durations, bytes, lists, structs (dicts with text keys), maps (lists of key/value pairs) and None.
``batches`` draws whole Arrow record batches, typed columns of such values (as ``map_batch`` gets
them). Needs ``hypothesis`` (the test extra); only :mod:`segship.testing` and tests import this module.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import phonenumbers
import pyarrow as pa
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


# -- Arrow batches, as ``map_batch`` gets them ----------------------------------------------------

UNICODE = st.characters(codec="utf-8", exclude_categories=("Cs",))
#: Values that need a decision of their own, to be found among fine ones by column-wise mapping.
ODD_TEXTS = ["", " ", "\t", "\x1f", "\u00a0", " padded ", "ÉLODIE", "ß", "İstanbul", "零", 'say "hi"', '","',
             "back\\", "é" * 255, "é" * 256, "%s"]
ODD_EMAILS = ["a@b", "a@b.c", "x@y.co\n", "no-at.example.com", "two@@example.com", "sp ace@example.com",
              "tab\t@example.com", "é@exämple.org", "a@b.c0m", "", "  ", "a\u2028@example.com", "\x1c@example.com",
              "ann@example.com\nbad", "bad\nann@example.com", "a@example.com\rx", "a" * 243 + "@example.com",
              "a" * 242 + "@example.com", " A@EXAMPLE.com "]
ODD_PHONES = ["+33 6 12 34 56 78", "0033612345678", "06 12 34 56 78", "(555) 123-4567", "+1", "0", "+0123456789",
              "+33 6 12 34 56 78 90 12 34", "abc", " ", "+٣٣٦١٢٣٤٥٦٧٨", "+1234567890123456", "+1234567",
              "+12345678\n+1234", "+123456789012345", "+12345678", "n/a", "(555) 001-0001", "+44 (0)20 7946 0018",
              "+440791112345", "+33 6 CALL ME", "612345678"]
#: Valid numbers of many countries, in E.164, from phonenumbers' own example numbers.
VALID_PHONES = sorted({phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                       for region in sorted(phonenumbers.SUPPORTED_REGIONS)[::4]
                       for number in (phonenumbers.example_number_for_type(region, kind)
                                      for kind in (phonenumbers.PhoneNumberType.MOBILE,
                                                   phonenumbers.PhoneNumberType.FIXED_LINE))
                       if number is not None})
TEXT = st.one_of(
    st.text(UNICODE, max_size=12),
    st.sampled_from(ODD_TEXTS),
    st.integers(250, 260).map(lambda n: "é" * n),  # around common length limits (Braze: 255 characters)
)
GOOD_EMAILS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}.com", st.text("abcXYZ.-_+", min_size=1, max_size=8),
              st.text("abcdef-", min_size=1, max_size=8)),
    st.sampled_from(["ada@example.com", " Ada@Example.COM ", "first.last+tag@sub.example.co.uk"]),
)
BAD_EMAILS = st.one_of(
    st.sampled_from(ODD_EMAILS),
    st.integers(235, 260).map(lambda n: "a" * n + "@example.com"),
)
EMAILS = st.one_of(GOOD_EMAILS, BAD_EMAILS, TEXT)
PHONES = st.one_of(st.sampled_from(ODD_PHONES), TEXT)
INT64_VALUES = st.integers(*INT64)
UTC_TIMES = st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1), timezones=st.just(datetime.UTC))
#: Column kinds: an Arrow type and its values (``columns`` adds the nulls).
KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "good_text": (pa.string(), st.text(UNICODE, min_size=1, max_size=12)
                  | st.sampled_from(['say "hi"', '",', '","', "back\\", "%s", "%b", "{}", "\u2028"])),
    "good_email": (pa.string(), GOOD_EMAILS),
    "bad_email": (pa.string(), BAD_EMAILS),
    "text": (pa.string(), TEXT),
    "large_text": (pa.large_string(), TEXT),
    "huge_text": (pa.large_string(), huge_texts),
    "email": (pa.string(), EMAILS),
    "phone": (pa.string(), PHONES),
    "odd_phone": (pa.string(), st.sampled_from(ODD_PHONES)),
    "good_phone": (pa.string(), st.sampled_from(VALID_PHONES) | st.just("")),
    "e164_phone": (pa.string(), st.integers(10**7, 10**15 - 1).map(lambda number: f"+{number}")),
    "int64": (pa.int64(), INT64_VALUES),
    "int8": (pa.int8(), st.integers(-128, 127)),
    "float64": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "float32": (pa.float32(), st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "bool": (pa.bool_(), st.booleans()),
    "decimal": (pa.decimal128(12, 3), st.decimals(-10**8, 10**8, places=3, allow_nan=False, allow_infinity=False)),
    "big_decimal": (pa.decimal256(76, 10), st.decimals(-(10**65) + 1, 10**65 - 1, places=10, allow_nan=False,
                                                       allow_infinity=False)),
    "date": (pa.date32(), st.dates()),
    "timestamp": (pa.timestamp("us"), st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1))),
    "timestamp_tz": (pa.timestamp("us", tz="+02:00"), UTC_TIMES),
    "text_array": (pa.list_(pa.string()), st.lists(st.none() | TEXT, max_size=3)),
    "int_array": (pa.list_(pa.int64()), st.lists(st.none() | INT64_VALUES, max_size=3)),
    "nested_array": (pa.list_(pa.list_(pa.string())), st.lists(st.none() | st.lists(st.none() | TEXT, max_size=2),
                                                                max_size=3)),
    "struct": (pa.struct([("x", pa.string()), ("n", pa.float64())]),
               st.fixed_dictionaries({"x": st.none() | TEXT, "n": st.none() | st.floats()})),
    "nothing": (pa.null(), st.none()),
}
#: Kinds whose values are all fine, and the kind of the odd value one of them may hold
ODD_ONE_OUT = {"good_text": "text", "good_email": "bad_email", "good_phone": "odd_phone", "e164_phone": "good_phone",
               "int64": "int64", "float64": "float64"}


@st.composite
def columns(draw: st.DrawFn, size: int, kinds: list[str]) -> pa.Array:
    """A column of ``size`` values of one of ``kinds`` (names in ``KINDS``): sometimes no nulls, sometimes
    only nulls, and sometimes all fine but one (a column-wise mapping decides whole columns at once
    where values are fine)."""
    kind = draw(st.sampled_from(kinds))
    arrow_type, values = KINDS[kind]
    nulls = draw(st.sampled_from([0.0, 0.0, 0.2, 1.0]))
    cells = draw(st.lists(values, min_size=size, max_size=size))
    holes = draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))
    cells = [None if hole < nulls else cell for cell, hole in zip(cells, holes)]
    if kind in ODD_ONE_OUT and draw(st.booleans()):
        cells[draw(st.integers(0, size - 1))] = draw(KINDS[ODD_ONE_OUT[kind]][1])
    return pa.array(cells, arrow_type)


@st.composite
def batches(draw: st.DrawFn, named: dict[str, list[str]], attributes: int = 0) -> tuple[pa.RecordBatch, list[str]]:
    """A batch of 1 to 10 rows with the ``named`` columns (name -> kinds) and up to ``attributes``
    others (``c0``, ``c1``…) of any kind; with the names of its columns."""
    size = draw(st.integers(1, 10))
    arrays = {name: draw(columns(size, kinds)) for name, kinds in named.items()}
    for number in range(draw(st.integers(0, attributes))):
        arrays[f"c{number}"] = draw(columns(size, list(KINDS)))
    return pa.RecordBatch.from_pydict(arrays), list(arrays)


@st.composite
def changes(draw: st.DrawFn, size: int, source_columns: list[str]) -> list[frozenset[str] | None] | None:
    """What ``map_batch`` gets as ``changed``: None (every row new), or per row None (send everything)
    or the columns that changed."""
    changed = st.none() | st.frozensets(st.sampled_from(source_columns)) if source_columns else st.none()
    return draw(st.none() | st.lists(changed, min_size=size, max_size=size))
