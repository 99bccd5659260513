"""The column-wise facts ``map_batch`` implementations rely on agree with Python and orjson value by value."""

from __future__ import annotations

import re
import sys

import orjson
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from segship.columns import (
    JsonArray,
    has_edge_python_whitespace,
    has_python_whitespace,
    json_member,
    long_text_rows,
    needs_json_escapes,
    small_text,
)

EVERY_CHARACTER = [chr(code) for code in range(sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF]


def test_python_whitespace_is_what_str_isspace_and_re_call_whitespace():
    found = has_python_whitespace(pa.array(EVERY_CHARACTER)).to_pylist()
    assert [c for c, hit in zip(EVERY_CHARACTER, found) if hit] == [c for c in EVERY_CHARACTER if c.isspace()]
    assert all(bool(re.search(r"\s", c)) == hit for c, hit in zip(EVERY_CHARACTER, found))


def test_escapes_are_found_where_orjson_writes_a_string_other_than_between_quotes():
    found = needs_json_escapes(pa.array(EVERY_CHARACTER)).to_pylist()
    assert found == [orjson.dumps(c) != b'"' + c.encode() + b'"' for c in EVERY_CHARACTER]


@given(st.lists(st.one_of(st.none(), st.text(max_size=6))))
def test_edge_whitespace_is_where_strip_changes_the_text(texts):
    found = has_edge_python_whitespace(pa.array(texts, pa.string())).to_pylist()
    assert found == [None if text is None else text != text.strip() for text in texts]


@given(st.one_of(
    st.lists(st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs", "Cc")).filter(
        lambda c: c not in '"\\'), max_size=6))).map(lambda v: pa.array(v, pa.large_string())),
    st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1))).map(lambda v: pa.array(v, pa.int64())),
    st.lists(st.one_of(st.none(), st.booleans())).map(lambda v: pa.array(v, pa.bool_())),
))
def test_json_members_are_what_orjson_writes_of_the_values_and_nothing_for_null(values):
    objects = JsonArray.joined(['{"first":0', *json_member('na"me', values), *json_member("n", values), "}"])
    expected = [orjson.dumps({"first": 0, **{key: value for key in ('na"me', "n") if value is not None}})
                for value in values.to_pylist()]
    assert [orjson.dumps(item) for item in objects] == expected
    assert objects.json() == b"[" + b",".join(expected) + b"]"
    assert small_text(values).type != pa.large_string()


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=20), st.integers(0, 10), st.integers(0, 5))
def test_long_text_rows_are_the_values_longer_in_characters_than_python_counts(values, limit, start):
    array = pa.array(values, pa.string())[min(start, len(values)):]  # a slice: offsets not from 0
    expected = [index for index, value in enumerate(array.to_pylist()) if value is not None and len(value) > limit]
    assert long_text_rows(array, limit) == expected
    assert long_text_rows(array.cast(pa.large_string()), limit) == expected


def test_long_text_rows_count_characters_not_bytes():
    assert long_text_rows(pa.array(["é" * 3, "abc", None]), 2) == [0, 1]
    assert long_text_rows(pa.array(["é" * 3, "abc", None]), 3) == []  # 6 bytes, 3 characters
