"""A segment's query as a subquery, as the warehouse planner and a source selecting columns wrap it."""

from __future__ import annotations

import duckdb
import pytest

from segship.sql_text import segment_subquery


@pytest.mark.parametrize("sql", [
    "SELECT 1 AS id",
    "SELECT 1 AS id;",
    "SELECT 1 AS id ; ;\n\n",
    "SELECT 1 AS id -- the last line is a comment",
    "SELECT 1 AS id -- a comment ending in a semicolon;",
    "SELECT ';' AS text, 1 AS id /* a block; comment */",
])
def test_a_query_ending_in_semicolons_or_a_comment_is_a_subquery(sql):
    assert duckdb.sql(f"SELECT id FROM {segment_subquery(sql)} AS s").fetchall() == [(1,)]


def test_a_semicolon_inside_the_query_stays():
    assert segment_subquery("SELECT ';' AS text;") == "(\nSELECT ';' AS text\n)"
